"""Nothing is committed that could not be read back and answered.

Before every ORM flush, each string that a new or changed row holds (inside JSON columns too) is checked by the
text rule of :mod:`localize.validation`. A string that breaks it (a lone surrogate, a NUL) aborts the flush, and
with it the transaction, with a ValidationError naming the table and column: a request is refused whole instead
of storing a row that every later listing would fail to serialize. The doors check input first and name the
field; this is the guard for whatever gets past them."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from localize.errors import ValidationError
from localize.validation import text_problem


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


@event.listens_for(Session, "before_flush")
def _refuse_unstorable_text(session: Session, _context: Any, _instances: Any) -> None:
    for row in (*session.new, *session.dirty):
        state = inspect(row)
        for attribute in state.mapper.column_attrs:
            history = state.attrs[attribute.key].history
            values = history.added if row not in session.new else [getattr(row, attribute.key)]
            for value in values:
                for text in _strings(value):
                    problem = text_problem(text)
                    if problem is not None:
                        where = f"{state.mapper.local_table.name}.{attribute.key}"
                        raise ValidationError(f"{where} {problem}; nothing was stored",
                                              errors=[{"field": where, "message": problem}])
