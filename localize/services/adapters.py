"""Adapter versions per (user, task): register, list, activate (rollback), delete, load for serving.

Serving survives a damaged store: when the files of the version that should answer are missing or corrupt, the
newest earlier version of the same owner whose files check out answers instead. The failure is logged, recorded
on the bad version (``load_error``) and as an event of the job that trained it, and the bad version is skipped
until it is activated again (which checks its files first).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, update
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job, JobEvent, Label, Task, User, aware, utcnow
from localize.db.session import session_scope
from localize.errors import AdapterError, ConflictError, CorruptAdapterError, NoAdapterError, NotFoundError
from localize.runtime import Runtime
from localize.services import webhooks as webhook_service
from localize.store import AdapterStore, StoredAdapter

if TYPE_CHECKING:  # torch comes with the engine; it loads with the first adapter, so listings start fast
    from localize.engine import AdapterWeights

logger = logging.getLogger(__name__)


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
        encoder_version_id=_encoder_version_id(session, weights),
    )
    session.add(row)
    session.flush()
    if activate:
        _activate(session, row)
    return row


def _encoder_version_id(session: Session, weights: AdapterWeights) -> int | None:
    reference = weights.meta.get("encoder") if weights.encoder is not None else None
    if not reference:
        return None
    row = session.exec(select(AdapterVersion).where(AdapterVersion.store_key == reference["store_key"],
                                                    AdapterVersion.version == reference["version"])).first()
    if row is None:
        raise NotFoundError(f"the encoder this adapter reads ({reference['store_key']!r} version "
                            f"{reference['version']}) is not a registered version")
    return row.id


def _activate(session: Session, row: AdapterVersion) -> None:
    owner = AdapterVersion.user_id == row.user_id if row.user_id is not None else AdapterVersion.user_id.is_(None)
    session.exec(
        update(AdapterVersion).where(AdapterVersion.task_id == row.task_id, owner, AdapterVersion.id != row.id)
        .values(is_active=False)
    )
    row.is_active = True
    session.add(row)
    webhook_service.adapter_activated(session=session, row=row)  # sent only if this transaction commits


def list_versions(*, session: Session, task: Task, user: User | None) -> list[AdapterVersion]:
    return list(session.exec(_owner(select(AdapterVersion), task, user).order_by(AdapterVersion.version)))


def prior_versions(*, session: Session, rows: list[AdapterVersion]) -> dict[int, int]:
    """For each of ``rows`` that is a head reading a task prior's encoding: row id -> the prior's version number."""
    encoder_ids = {row.encoder_version_id for row in rows if row.encoder_version_id is not None}
    if not encoder_ids:
        return {}
    numbers = dict(session.exec(select(AdapterVersion.id, AdapterVersion.version)
                                .where(AdapterVersion.id.in_(encoder_ids))).all())
    return {row.id: numbers[row.encoder_version_id] for row in rows if row.encoder_version_id in numbers}


def get_version(*, session: Session, task: Task, user: User | None, version: int) -> AdapterVersion:
    row = session.exec(_owner(select(AdapterVersion), task, user).where(AdapterVersion.version == version)).first()
    if row is None:
        owner = f"user {user.name!r}" if user is not None else "the prior"
        raise NotFoundError(f"adapter version {version} of {owner} in task {task.name!r} does not exist")
    return row


def active_version(*, session: Session, task: Task, user: User | None) -> AdapterVersion | None:
    return session.exec(_owner(select(AdapterVersion), task, user).where(AdapterVersion.is_active)).first()


def activate_version(
    *, session: Session, store: AdapterStore, task: Task, user: User | None, version: int,
    check_quality: bool = False,
) -> AdapterVersion:
    """Makes ``version`` the one that serves; activating an older version is a rollback. Its files are checked
    first: a version whose files are missing or corrupt is refused, and one that was recorded as unloadable but
    checks out now (its files were restored) is cleared. With ``check_quality``, a version that
    :func:`activation_concern` objects to is refused too (a ConflictError that says why)."""
    row = get_version(session=session, task=task, user=user, version=version)
    if check_quality and not row.is_active:
        concern = activation_concern(metrics=row.metrics or {},
                                     active=active_version(session=session, task=task, user=user))
        if concern:
            raise ConflictError(f"adapter version {version} of {_owner_name(task, user)} was not activated: "
                                f"{concern}; activate it anyway with --force")
    try:
        store.verify(row.store_key, row.version, expected_hashes=row.files)
    except (AdapterError, NotFoundError) as error:
        raise ConflictError(f"adapter version {version} of {_owner_name(task, user)} cannot be activated: {error}") from None
    row.load_error, row.load_error_at = None, None
    _activate(session, row)
    session.commit()
    return row


# A new version whose validation macro-F1 is this far below the active version's is "clearly" worse: the two were
# scored on different held-out rows, so smaller gaps are mostly noise.
CLEARLY_BELOW = 0.05


def unscored_warning(metrics: dict) -> str | None:
    """What to say of a version scored on no validation rows (its quality is unknown), or None."""
    if metrics.get("val_rows") and metrics.get("val_macro_f1") is not None:
        return None
    return (f"it was scored on no validation rows (its {metrics.get('train_rows', '?')} labels were too few to hold "
            "some out), so its quality is unknown")


def activation_concern(*, metrics: dict, active: AdapterVersion | None) -> str | None:
    """Why a version with these training ``metrics`` should not replace the ``active`` one without being forced,
    or None: it was scored on no validation rows (its quality is unknown), or its validation macro-F1 is clearly
    below the active version's. A first version always may serve: nothing else would."""
    if active is None:
        return None  # nothing serves yet: the new version is better than none (unscored_warning says if unscored)
    if not metrics.get("val_rows") or metrics.get("val_macro_f1") is None:
        return f"{unscored_warning(metrics)}, and version {active.version} serves"
    old = (active.metrics or {}).get("val_macro_f1")
    if old is not None and metrics["val_macro_f1"] < old - CLEARLY_BELOW:
        return (f"its validation macro-F1 {metrics['val_macro_f1']:.3f} is clearly below active version "
                f"{active.version}'s {old:.3f}")
    return None


def _owner_name(task: Task, user: User | None) -> str:
    return (f"user {user.name!r}" if user is not None else "the prior") + f" in task {task.name!r}"


def delete_version(*, session: Session, store: AdapterStore, task: Task, user: User | None, version: int) -> None:
    row = get_version(session=session, task=task, user=user, version=version)
    if row.is_active:
        raise ConflictError(
            f"adapter version {version} is active and serving; activate another version before deleting it"
        )
    readers = session.exec(select(func.count()).where(AdapterVersion.encoder_version_id == row.id)).one()
    if readers:
        raise ConflictError(
            f"adapter version {version} of {_owner_name(task, user)} is the encoder of {readers} user adapter "
            "version(s), whose heads read its encoding; retrain or delete those first"
        )
    # Jobs keep their history; they just stop pointing at a version that no longer exists.
    session.exec(update(Job).where(Job.adapter_version_id == row.id).values(adapter_version_id=None))
    session.delete(row)
    session.commit()
    store.delete(row.store_key, row.version)


def export_version(*, store: AdapterStore, row: AdapterVersion, destination: str | Path) -> Path:
    """Copies a stored version (PEFT layout plus head), checked against its recorded hashes, to ``destination``."""
    try:
        return store.export(row.store_key, row.version, destination, expected_hashes=row.files)
    except FileExistsError as error:
        raise ConflictError(str(error)) from None


def engine_key(row: AdapterVersion) -> tuple[str, int]:
    """The key ``row`` is resident under in an engine (the same whether it serves or is a head's encoder)."""
    return (row.store_key, row.version)


def load_weights(*, runtime: Runtime, row: AdapterVersion) -> AdapterWeights:
    """The resident adapter for ``row``, loaded (and hash-checked) on first use."""
    return load_stored(runtime=runtime, store_key=row.store_key, version=row.version, files=row.files)


def load_stored(*, runtime: Runtime, store_key: str, version: int, files: dict[str, str] | None) -> AdapterWeights:
    """The resident adapter stored as ``(store_key, version)``, checked against ``files``; a head that reads a
    shared encoder gets the encoder (the task prior version it was trained on) resident beside it, under the
    same key the prior itself is served by. Needs no database, so Ray replicas load through it too."""

    def load() -> AdapterWeights:
        weights = runtime.store.load(store_key, version, expected_hashes=files)
        reference = weights.meta.get("encoder")
        if reference:
            try:
                weights.encoder = load_stored(runtime=runtime, store_key=reference["store_key"],
                                              version=reference["version"], files=reference.get("files"))
            except (AdapterError, NotFoundError) as error:
                raise AdapterError(f"adapter {store_key!r} version {version} reads the encoder "
                                   f"{reference['store_key']!r} version {reference['version']}, which cannot be "
                                   f"loaded: {error}") from error
        return weights

    return runtime.engine.adapter((store_key, version), load)  # = engine_key(row)


def load_serving_weights(*, runtime: Runtime, row: AdapterVersion) -> AdapterWeights:
    """The weights that answer for ``row``: its own, or, when they cannot be loaded (a missing or corrupt file, a
    failing store), those of the newest earlier version of the same owner that loads. ``weights.version`` says which
    version answered. Raises AdapterError, naming each version tried and why it failed, when none loads."""
    failures = []
    if row.load_error is None:
        try:
            return load_weights(runtime=runtime, row=row)
        except (AdapterError, NotFoundError) as error:
            _note_load_failure(runtime, row, error)
            failures.append(str(error))
    else:
        failures.append(f"version {row.version} was recorded as unloadable: {row.load_error}")
    with session_scope(runtime.database) as session:
        owner = AdapterVersion.user_id == row.user_id if row.user_id is not None else AdapterVersion.user_id.is_(None)
        earlier = list(session.exec(
            select(AdapterVersion).where(AdapterVersion.task_id == row.task_id, owner,
                                         AdapterVersion.version < row.version, AdapterVersion.load_error.is_(None))
            .order_by(AdapterVersion.version.desc())
        ))
    for candidate in earlier:
        try:
            weights = load_weights(runtime=runtime, row=candidate)
        except (AdapterError, NotFoundError) as error:
            _note_load_failure(runtime, candidate, error)
            failures.append(str(error))
            continue
        logger.warning("adapter %s version %s cannot be served; version %s answers instead", row.store_key,
                       row.version, candidate.version)
        return weights
    raise AdapterError(f"adapter {row.store_key!r} version {row.version} cannot be served and no earlier version "
                       "can stand in: " + "; ".join(failures))


def _note_load_failure(runtime: Runtime, row: AdapterVersion, error: Exception) -> None:
    """Logs the failure. A missing or corrupt file (not a passing store outage, nor an adapter this base cannot
    serve) marks the version unloadable, in its own transaction (the caller may be only reading), and is told to
    the job that trained it."""
    logger.warning("adapter %s version %s cannot be loaded: %s", row.store_key, row.version, error)
    if not isinstance(error, (CorruptAdapterError, NotFoundError)):
        return
    with session_scope(runtime.database) as session:
        marked = session.exec(
            update(AdapterVersion).where(AdapterVersion.id == row.id, AdapterVersion.load_error.is_(None))
            .values(load_error=str(error), load_error_at=utcnow())
        ).rowcount
        job_id = session.exec(select(Job.id).where(Job.adapter_version_id == row.id)).first()
        if marked and job_id is not None:
            session.add(JobEvent(job_id=job_id, level="error",
                                 message=f"adapter version {row.version} can no longer be loaded and is skipped "
                                         f"while serving: {error}"))


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
    """Users whose labels changed since their active adapter was trained, who have none yet, or whose head reads
    a task prior version that is no longer the active one (the prior was retrained or rolled back)."""
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
    prior = session.exec(select(AdapterVersion.id).where(AdapterVersion.task_id == task.id, AdapterVersion.is_active,
                                                         AdapterVersion.user_id.is_(None))).first()
    stale_ids = []
    for user_id, count, newest in stats:
        row = active.get(user_id)
        if row is None or row.n_labels != count or (aware(newest) and aware(row.labels_updated_at)
                                                     and aware(newest) > aware(row.labels_updated_at)):
            stale_ids.append(user_id)
        elif row.encoder_version_id is not None and row.encoder_version_id != prior:
            stale_ids.append(user_id)  # a head fitted on another prior version than the one now active
    if not stale_ids:
        return []
    return list(session.exec(select(User).where(User.id.in_(stale_ids)).order_by(User.name)))
