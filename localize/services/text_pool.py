"""A task's text pool: what its users are asked to label.

The pool is the texts an admin uploaded without labels (``pool_text``) plus every text another user of the task
labelled. A user's candidates are the pool less the texts they labelled and the ones they skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, union
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from localize.db.batches import in_batches
from localize.db.models import Label, PoolText, Task, Text, TextSkip, User
from localize.errors import PayloadTooLargeError, ValidationError
from localize.labels_io import RowError, read_records
from localize.validation import text_problem
from localize.services import texts as text_service
from localize.services.labels import _dialect_insert, _ensure_texts

_ATTEMPTS = 3


@dataclass(frozen=True)
class PoolRow:
    line: int
    text: str
    item: str | None = None


@dataclass
class PoolUploadReport:
    added: int = 0
    already_in_pool: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.added + self.already_in_pool

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "added": self.added, "already_in_pool": self.already_in_pool,
                "errors": [vars(error) for error in self.errors]}


@dataclass(frozen=True)
class Candidate:
    text_id: int
    text: str
    source: str  # "pool": an admin uploaded it; "crowd": another user labelled it


def check_pool_row(line: int, record: dict, *, max_text_chars: int) -> PoolRow | RowError:
    """One record of a pool file (a ``text`` and an optional ``item``); every problem in it is named together."""
    problems = []
    text, item = record.get("text"), record.get("item")
    if text is None:
        problems.append("missing field 'text'")
    elif not isinstance(text, str):
        problems.append(f"field 'text' must be a string, got {type(text).__name__} {text!r}")
    elif not text.strip():
        problems.append("field 'text' is empty" if not text else "field 'text' is only whitespace")
    elif len(text) > max_text_chars:
        problems.append(f"text is {len(text)} characters, over the limit of {max_text_chars}")
    elif text_problem(text) is not None:
        problems.append(f"field 'text' {text_problem(text)}")
    if isinstance(item, str) and not item.strip():
        item = None  # an empty CSV cell is how CSV says "absent"
    if item is not None and not isinstance(item, str):
        problems.append(f"field 'item' must be a string, got {type(item).__name__} {item!r}")
    elif item is not None and len(item) > 256:
        problems.append(f"item is {len(item)} characters, over the limit of 256")
    if problems:
        return RowError(line=line, message="; ".join(problems))
    return PoolRow(line=line, text=text, item=None if item is None else item.strip())


def parse_pool_records(
    records: list[tuple[int, dict | str]], *, max_text_chars: int, max_rows: int | None = None
) -> tuple[list[PoolRow], list[RowError]]:
    if max_rows is not None and len(records) > max_rows:
        raise PayloadTooLargeError(f"the upload has {len(records)} texts, over the limit of {max_rows} per request")
    rows, errors = [], []
    for line, record in records:
        outcome = RowError(line, record) if isinstance(record, str) else check_pool_row(
            line, record, max_text_chars=max_text_chars)
        (errors if isinstance(outcome, RowError) else rows).append(outcome)
    return rows, errors


def parse_pool_file(
    data: bytes | str, fmt: str, *, max_text_chars: int, max_rows: int | None = None
) -> tuple[list[PoolRow], list[RowError]]:
    """Rows of a JSONL or CSV pool file (read as label files are, with a ``text`` column and no labels)."""
    return parse_pool_records(read_records(data, fmt, required=("text",)), max_text_chars=max_text_chars,
                              max_rows=max_rows)


def add_texts(
    *, session: Session, task: Task, rows: list[PoolRow], errors: list[RowError] | None = None
) -> PoolUploadReport:
    """Adds the rows' texts to ``task``'s pool in one transaction; a text already there is counted, not repeated."""
    report = PoolUploadReport(errors=sorted(errors or [], key=lambda error: error.line))
    if not rows:
        return report
    by_text: dict[str, PoolRow] = {}
    for row in rows:
        by_text.setdefault(row.text, row)
    for attempt in range(_ATTEMPTS):
        try:
            report.added = _store_pool_rows(session, task, by_text)
            break
        except IntegrityError as error:  # a text found was deleted meanwhile: nothing was stored, run it again
            session.rollback()
            if not text_service.names_a_deleted_text(error) or attempt == _ATTEMPTS - 1:
                raise
    report.already_in_pool = len(rows) - report.added
    return report


def _store_pool_rows(session: Session, task: Task, by_text: dict[str, PoolRow]) -> int:
    """Adds the texts that are not in the pool yet and commits; returns how many."""
    text_ids = _ensure_texts(session, sorted(by_text))
    present = set()
    for chunk in in_batches(list(text_ids.values())):
        present.update(session.exec(select(PoolText.text_id).where(PoolText.task_id == task.id,
                                                                   PoolText.text_id.in_(chunk))))
    new = [{"task_id": task.id, "text_id": text_ids[text], "item": row.item}
           for text, row in by_text.items() if text_ids[text] not in present]
    insert = _dialect_insert(session)
    for chunk in in_batches(new):
        if insert is None:
            session.add_all(PoolText(**value) for value in chunk)
            session.flush()
        else:  # a concurrent upload of the same texts is skipped, not an error
            session.exec(insert(PoolText).values(chunk).on_conflict_do_nothing(index_elements=["task_id", "text_id"]))
    session.commit()
    return len(new)


def list_pool(*, session: Session, task: Task, offset: int = 0, limit: int = 100) -> tuple[list[tuple[PoolText, str]], int]:
    """The uploaded pool texts of ``task``, oldest first, one page at a time."""
    count = session.exec(select(func.count()).select_from(PoolText).where(PoolText.task_id == task.id)).one()
    rows = session.exec(select(PoolText, Text.body).join(Text, Text.id == PoolText.text_id)
                        .where(PoolText.task_id == task.id).order_by(PoolText.id).offset(offset).limit(limit)).all()
    return [(row, body) for row, body in rows], count


def _pool_ids(task: Task):  # noqa: ANN202
    return union(select(PoolText.text_id.label("text_id")).where(PoolText.task_id == task.id),
                 select(Label.text_id.label("text_id")).where(Label.task_id == task.id)).subquery()


def pool_summary(*, session: Session, task: Task) -> dict[str, int]:
    """How many texts the pool holds: uploaded, labelled by someone, and in all (the union of both)."""
    uploaded = session.exec(select(func.count()).select_from(PoolText).where(PoolText.task_id == task.id)).one()
    labelled = session.exec(select(func.count(func.distinct(Label.text_id))).where(Label.task_id == task.id)).one()
    total = session.exec(select(func.count()).select_from(_pool_ids(task))).one()
    return {"uploaded": uploaded, "labelled": labelled, "total": total}


def candidates(*, session: Session, task: Task, user: User, include_skipped: bool = False) -> list[Candidate]:
    """The pool texts ``user`` has neither labelled nor (unless ``include_skipped``) skipped, by text id."""
    pool = _pool_ids(task)
    mine = select(Label.text_id).where(Label.task_id == task.id, Label.user_id == user.id)
    query = select(Text.id, Text.body).join(pool, pool.c.text_id == Text.id).where(Text.id.not_in(mine))
    if not include_skipped:
        skipped = select(TextSkip.text_id).where(TextSkip.task_id == task.id, TextSkip.user_id == user.id)
        query = query.where(Text.id.not_in(skipped))
    rows = session.exec(query.order_by(Text.id)).all()
    uploaded = set(session.exec(select(PoolText.text_id).where(PoolText.task_id == task.id)))
    return [Candidate(text_id=text_id, text=body, source="pool" if text_id in uploaded else "crowd")
            for text_id, body in rows]


def progress(*, session: Session, task: Task, user: User) -> dict[str, int]:
    """How far ``user`` is through the pool: texts labelled, skipped, left, and the pool's size."""
    pool = _pool_ids(task)
    total = session.exec(select(func.count()).select_from(pool)).one()
    labelled = session.exec(select(func.count()).select_from(Label).join(pool, pool.c.text_id == Label.text_id)
                            .where(Label.task_id == task.id, Label.user_id == user.id)).one()
    skipped = session.exec(select(func.count()).select_from(TextSkip)
                           .where(TextSkip.task_id == task.id, TextSkip.user_id == user.id)).one()
    return {"total": total, "labelled": labelled, "skipped": skipped, "left": max(total - labelled - skipped, 0)}


def get_text(*, session: Session, task: Task, text_id: int) -> Text:
    """A text of ``task``'s pool by id; a text outside the pool is a validation error that names it."""
    pool = _pool_ids(task)
    text = session.exec(select(Text).join(pool, pool.c.text_id == Text.id).where(Text.id == text_id)).first()
    if text is None:
        raise ValidationError(f"text {text_id} is not in task {task.name!r}'s pool")
    return text


def open_text_ids(*, session: Session, task: Task, user: User, text_ids: list[int]) -> set[int]:
    """Which of ``text_ids`` ``user`` has neither labelled nor skipped in ``task``."""
    if not text_ids:
        return set()
    done = set(session.exec(select(Label.text_id).where(Label.task_id == task.id, Label.user_id == user.id,
                                                        Label.text_id.in_(text_ids))))
    done |= set(session.exec(select(TextSkip.text_id).where(TextSkip.task_id == task.id, TextSkip.user_id == user.id,
                                                            TextSkip.text_id.in_(text_ids))))
    return set(text_ids) - done
