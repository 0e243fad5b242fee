"""Labels: idempotent uploads that keep good rows, report bad ones by line, and never lose what is stored.

A text is stored once (keyed by its SHA-256) and shared by every user who labels it. A (user, task, text)
has one label; uploading it again updates the label and reports the old one.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete as sa_delete
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from localize.db.batches import in_batches
from localize.db.models import Label, Task, Text, User, aware, utcnow
from localize.errors import NotFoundError, PayloadTooLargeError
from localize.hashing import text_hash
from localize.labels_io import LabelRow, RowError
from localize.services import texts as text_service
from localize.services import webhooks as webhook_service
from localize.services.users import check_user_name
from localize.suggest import did_you_mean
from localize.validation import text_problem

_ATTEMPTS = 3
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


@dataclass
class LabelChange:
    line: int
    user: str
    text: str
    old_label: str
    new_label: str


@dataclass
class UploadReport:
    created: int = 0
    updated: list[LabelChange] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + len(self.updated) + self.unchanged

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "created": self.created,
            "updated": [vars(change) for change in self.updated],
            "unchanged": self.unchanged,
            "errors": [vars(error) for error in self.errors],
        }


def check_row(row: LabelRow, task: Task, max_text_chars: int) -> str | None:
    """Why ``row`` cannot be stored in ``task``, or ``None``."""
    try:
        check_user_name(row.user)
    except Exception as error:  # noqa: BLE001  (the message is what we report)
        return str(error)
    if not isinstance(row.text, str) or not row.text.strip():
        return "text is empty"
    if len(row.text) > max_text_chars:
        return f"text is {len(row.text)} characters, over the limit of {max_text_chars}"
    for name in ("text", "label", "item", "split"):
        value = getattr(row, name)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            return f"{name} {problem}"
    if row.label not in task.labels:
        return (f"label {row.label!r} is not one of task {task.name!r}'s labels {task.labels}"
                f"{did_you_mean(row.label, task.labels)}")
    if row.item is not None and len(row.item) > 256:
        return f"item is {len(row.item)} characters, over the limit of 256"
    if row.split not in (None, "train", "test"):
        return f"split {row.split!r} must be 'train' or 'test'"
    return None


def upsert_labels(
    *,
    session: Session,
    task: Task,
    rows: Sequence[LabelRow],
    max_text_chars: int = 5000,
    max_rows: int | None = None,
    errors: Sequence[RowError] = (),
) -> UploadReport:
    """Stores the valid rows in one transaction and reports the invalid ones by line.

    ``errors`` are problems already found while parsing; they are merged into the report."""
    if max_rows is not None and len(rows) > max_rows:
        raise PayloadTooLargeError(f"{len(rows)} rows is over the limit of {max_rows} rows per request")
    report = UploadReport(errors=list(errors))
    good: dict[tuple[str, str], LabelRow] = {}
    for row in rows:
        problem = check_row(row, task, max_text_chars)
        if problem:
            report.errors.append(RowError(line=row.line, message=problem))
        else:
            good[(row.user, row.text)] = row  # a later row for the same text overrides an earlier one
    report.errors.sort(key=lambda error: error.line)
    if not good:
        return report

    for attempt in range(_ATTEMPTS):
        try:
            _store_rows(session, task, good, report)
            webhook_service.labels_uploaded(  # in this transaction: sent only if the labels are stored
                session=session, task=task, users=sorted({user for user, _ in good}), accepted=report.accepted,
                created=report.created, updated=len(report.updated), unchanged=report.unchanged,
                errors=len(report.errors))
            session.commit()
            return report
        except (OperationalError, IntegrityError) as error:
            # PostgreSQL may pick this transaction as a deadlock victim or fail it on serialization, and a text it
            # found may have been deleted meanwhile with the last labels that named it; nothing of it was stored,
            # so it is run again from the start.
            session.rollback()
            retryable = (text_service.names_a_deleted_text(error) if isinstance(error, IntegrityError)
                         else getattr(error.orig, "sqlstate", None) in _RETRYABLE)
            if not retryable or attempt == _ATTEMPTS - 1:
                raise
            report.created, report.updated, report.unchanged = 0, [], 0
            time.sleep(0.05 * (attempt + 1))
    return report


def _store_rows(session: Session, task: Task, good: dict[tuple[str, str], LabelRow], report: UploadReport) -> None:
    """Inserts new labels and updates changed ones, safe against concurrent uploads of the same rows: new rows go
    in with ``INSERT .. ON CONFLICT DO NOTHING``; rows that existed (or that another writer inserted first) are
    then locked (``FOR UPDATE``, in (user id, text id) order) and compared, so each change is reported once with
    its true old label. New rows are inserted in upload order (label ids follow the file); two uploads inserting
    the same new rows in different orders can deadlock on PostgreSQL, which aborts one, and the caller retries it."""
    users = _ensure_users(session, sorted({user for user, _ in good}))
    text_ids = _ensure_texts(session, sorted({text for _, text in good}))
    now = utcnow()
    rows = {(users[user].id, text_ids[text]): row for (user, text), row in good.items()}
    keys = list(rows)
    inserted = _insert_new_labels(session, task, [(key, rows[key]) for key in keys], now)
    report.created = len(inserted)
    existing = _lock_labels(session, task, [key for key in keys if key not in inserted])
    for key in keys:
        if key in inserted:
            continue
        row, label = rows[key], existing[key]
        if label.label != row.label or (row.item and label.item != row.item) or (row.split and label.split != row.split):
            if label.label != row.label:
                report.updated.append(LabelChange(row.line, row.user, row.text, label.label, row.label))
                label.label, label.updated_at = row.label, now  # only a label change makes the adapter stale
            else:
                report.unchanged += 1
            label.item = row.item or label.item
            label.split = row.split or label.split
            session.add(label)
        else:
            report.unchanged += 1
    report.updated.sort(key=lambda change: change.line)
    session.flush()


def _insert_new_labels(
    session: Session, task: Task, rows: list[tuple[tuple[int, int], LabelRow]], now: datetime
) -> set[tuple[int, int]]:
    """Inserts the rows that do not exist yet; returns the (user id, text id) of those this call inserted."""
    values = [{"user_id": user_id, "task_id": task.id, "text_id": text_id, "label": row.label, "item": row.item,
               "split": row.split, "created_at": now, "updated_at": now} for (user_id, text_id), row in rows]
    insert = _dialect_insert(session)
    inserted: set[tuple[int, int]] = set()
    if insert is None:  # no ON CONFLICT on this database: insert what is missing now (not safe under concurrency)
        present = set(_lock_labels(session, task, [key for key, _ in rows]))
        for value in values:
            if (value["user_id"], value["text_id"]) not in present:
                session.add(Label(**value))
                inserted.add((value["user_id"], value["text_id"]))
        session.flush()
        return inserted
    for chunk in in_batches(values):
        statement = (insert(Label).values(chunk)
                     .on_conflict_do_nothing(index_elements=["user_id", "task_id", "text_id"])
                     .returning(Label.user_id, Label.text_id))
        inserted.update((user_id, text_id) for user_id, text_id in session.exec(statement))
    return inserted


def _lock_labels(session: Session, task: Task, keys: list[tuple[int, int]]) -> dict[tuple[int, int], Label]:
    """The labels with these (user id, text id), locked until commit, in (user id, text id) order."""
    by_user: dict[int, list[int]] = {}
    for user_id, text_id in sorted(keys):
        by_user.setdefault(user_id, []).append(text_id)
    found: dict[tuple[int, int], Label] = {}
    for user_id, text_ids in by_user.items():
        for chunk in in_batches(text_ids):
            query = (select(Label).where(Label.task_id == task.id, Label.user_id == user_id, Label.text_id.in_(chunk))
                     .order_by(Label.text_id).with_for_update())
            for label in session.exec(query):
                found[(label.user_id, label.text_id)] = label
    return found


def _dialect_insert(session: Session):  # noqa: ANN202
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(session.get_bind().dialect.name)


def _ensure_users(session: Session, names: list[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for chunk in in_batches(names):
        found.update({user.name: user for user in session.exec(select(User).where(User.name.in_(chunk)))})
    missing = [name for name in names if name not in found]
    if missing:
        _insert_ignore(session, User, [{"name": name, "created_at": utcnow()} for name in missing], "name")
        for chunk in in_batches(missing):
            found.update({user.name: user for user in session.exec(select(User).where(User.name.in_(chunk)))})
    return found


def _ensure_texts(session: Session, bodies: list[str]) -> dict[str, int]:
    by_hash = {text_hash(body): body for body in bodies}
    ids: dict[str, int] = {}
    hashes = list(by_hash)

    def lookup(keys: list[str]) -> None:
        for chunk in in_batches(keys):
            for text_id, digest in session.exec(select(Text.id, Text.sha256).where(Text.sha256.in_(chunk))):
                ids[by_hash[digest]] = text_id

    lookup(hashes)
    missing = [digest for digest in hashes if by_hash[digest] not in ids]
    if missing:
        now = utcnow()
        _insert_ignore(session, Text, [{"sha256": d, "body": by_hash[d], "created_at": now} for d in missing], "sha256")
        lookup(missing)
    return ids


def _insert_ignore(session: Session, table: type, values: list[dict], key: str) -> None:
    """INSERT that skips rows another writer inserted first, so concurrent uploads never collide."""
    insert = _dialect_insert(session)
    for chunk in in_batches(values):
        if insert is None:
            for value in chunk:
                session.add(table(**value))
            session.flush()
        else:
            session.exec(insert(table).values(chunk).on_conflict_do_nothing(index_elements=[key]))


def list_labels(
    *, session: Session, task: Task, user: User, offset: int = 0, limit: int = 100
) -> tuple[list[tuple[Label, str]], int]:
    condition = (Label.task_id == task.id, Label.user_id == user.id)
    count = session.exec(select(func.count()).select_from(Label).where(*condition)).one()
    rows = session.exec(
        select(Label, Text.body).join(Text, Text.id == Label.text_id).where(*condition)
        .order_by(Label.id).offset(offset).limit(limit)
    ).all()
    return [(label, body) for label, body in rows], count


def delete_labels(*, session: Session, task: Task, user: User, label_ids: list[int] | None = None) -> int:
    """Deletes the given labels of ``user`` (all of them when ``label_ids`` is None), and then their texts where
    nothing else names them; returns how many labels."""
    statement = sa_delete(Label).where(Label.task_id == task.id, Label.user_id == user.id)
    named = select(Label.id).where(Label.task_id == task.id, Label.user_id == user.id)
    if label_ids is not None:
        owned = set(session.exec(named.where(Label.id.in_(label_ids))))
        unknown = sorted(set(label_ids) - owned)
        if unknown:
            raise NotFoundError(f"label id(s) {unknown} do not exist for user {user.name!r} in task {task.name!r}")
        statement = statement.where(Label.id.in_(label_ids))
    else:
        owned = set(session.exec(named))
    text_ids = text_service.text_ids_named(session, label_ids=owned)
    deleted = session.exec(statement).rowcount
    session.commit()
    text_service.delete_unnamed_texts(session, text_ids)
    return deleted


def label_snapshot(*, session: Session, task: Task, user: User) -> tuple[int, datetime | None]:
    """How many labels ``user`` has in ``task`` and when the newest changed: an adapter records both."""
    count, newest = session.exec(
        select(func.count(), func.max(Label.updated_at)).where(Label.task_id == task.id, Label.user_id == user.id)
    ).one()
    return count, aware(newest)


def training_rows(
    *, session: Session, task: Task, user: User | None, split: str | None = None
) -> tuple[list[str], list[str]]:
    """Texts and labels to train on: one user's, or every user's pooled (``user=None``, for the task prior)."""
    rows = _label_rows(session=session, task=task, user=user, split=split)
    return [body for body, _, _ in rows], [label for _, label, _ in rows]


def pooled_training_rows(*, session: Session, task: Task) -> tuple[list[str], list[str], list[str]]:
    """Every user's texts and labels, and who gave each label (the user's id): what a task prior learns from."""
    rows = _label_rows(session=session, task=task, user=None, split=None)
    return [body for body, _, _ in rows], [label for _, label, _ in rows], [str(who) for _, _, who in rows]


def _label_rows(*, session: Session, task: Task, user: User | None, split: str | None) -> list[tuple[str, str, int]]:
    query = select(Text.body, Label.label, Label.user_id).join(Text, Text.id == Label.text_id).where(
        Label.task_id == task.id)
    if user is not None:
        query = query.where(Label.user_id == user.id)
    if split is not None:
        query = query.where(Label.split == split)
    return list(session.exec(query.order_by(Label.id)).all())
