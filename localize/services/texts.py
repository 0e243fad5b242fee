"""Texts are stored once and shared by every label, pool entry and skip that names them. When the last of those
goes (a task, a user or labels deleted), the text goes too: deleting someone's data deletes what they wrote.

The rows that named the texts are deleted and committed first; the texts go after, in a transaction of their own,
so a text that a concurrent upload names again in the meantime is kept (it is checked again, not assumed gone).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import delete, exists, or_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from localize.db.batches import in_batches
from localize.db.models import Label, PoolText, Text, TextSkip

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
_NAMERS = (Label, PoolText, TextSkip)  # every table that names a text


def text_ids_named(session: Session, *, task_id: int | None = None, user_id: int | None = None,
                   label_ids: Iterable[int] | None = None) -> set[int]:
    """The texts that the task's (or the user's) labels, pool entries and skips name, or the given labels name."""
    if label_ids is not None:
        ids = sorted(set(label_ids))
        return {text_id for chunk in in_batches(ids)
                for text_id in session.exec(select(Label.text_id).where(Label.id.in_(chunk)))}
    found: set[int] = set()
    for table in _NAMERS:
        if user_id is not None and not hasattr(table, "user_id"):
            continue  # the pool belongs to a task, not to a user
        statement = select(table.text_id)
        if task_id is not None:
            statement = statement.where(table.task_id == task_id)
        if user_id is not None:
            statement = statement.where(table.user_id == user_id)
        found.update(session.exec(statement.distinct()))
    return found


def delete_unnamed_texts(session: Session, text_ids: Iterable[int]) -> int:
    """Deletes those of ``text_ids`` that no label, pool entry or skip names any more and commits; returns how many.
    Call it after the rows that named them are deleted and committed. A text named again meanwhile is kept; if a
    concurrent writer names one between the check and the delete (the database refuses the delete), it checks
    again; a database that stays busy leaves the texts in place (harmless: nothing names them) and logs it."""
    ids = sorted(set(text_ids))
    for attempt in range(_ATTEMPTS):
        try:
            removed = 0
            for chunk in in_batches(ids):
                named = or_(*(exists().where(table.text_id == Text.id) for table in _NAMERS))
                removed += session.exec(delete(Text).where(Text.id.in_(chunk), ~named)).rowcount
            session.commit()
            return removed
        except (IntegrityError, OperationalError) as error:
            session.rollback()
            if attempt == _ATTEMPTS - 1:
                logger.warning("%d unused text(s) were not removed: %s", len(ids), error)
    return 0


def names_a_deleted_text(error: IntegrityError) -> bool:
    """Whether a write failed because a text it named was deleted after it was looked up (a foreign key no longer
    met): the write can run again from the start, which stores the text anew."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == "23503" or "FOREIGN KEY constraint failed" in str(original)
