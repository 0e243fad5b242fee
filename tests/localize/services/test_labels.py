"""Label uploads: idempotent upserts, texts stored once, bad rows reported by line, paging, deletion, snapshots."""
from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from localize.db.models import Label, Text, User
from localize.errors import NotFoundError, PayloadTooLargeError
from localize.labels_io import LabelRow, RowError
from localize.services.labels import (
    delete_labels,
    label_snapshot,
    list_labels,
    pooled_training_rows,
    training_rows,
    upsert_labels,
)
from localize.services.tasks import create_task
from localize.services.users import get_user

from .support import JANE_LABELS, JOHN_LABELS, TEXTS, label_rows


def _count(session: Session, table: type) -> int:
    return session.exec(select(func.count()).select_from(table)).one()


def test_upsert_creates_labels_users_and_texts(session: Session, task) -> None:
    report = upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:6], JOHN_LABELS[:6]))

    assert (report.created, report.updated, report.unchanged, report.errors) == (6, [], 0, [])
    assert report.accepted == 6
    assert _count(session, Label) == 6 and _count(session, Text) == 6
    john = get_user(session=session, name="john")
    stored = {body: label.label for label, body in list_labels(session=session, task=task, user=john)[0]}
    assert stored == dict(zip(TEXTS[:6], JOHN_LABELS[:6]))


def test_reupload_updates_and_reports_the_old_label(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:4], JOHN_LABELS[:4]))
    flipped = {"work": "personal", "personal": "work"}
    rows = label_rows("john", TEXTS[:4], JOHN_LABELS[:2] + [flipped[JOHN_LABELS[2]], JOHN_LABELS[3]], first_line=10)

    report = upsert_labels(session=session, task=task, rows=rows)

    assert report.created == 0 and report.unchanged == 3
    assert [vars(change) for change in report.updated] == [
        {"line": 12, "user": "john", "text": TEXTS[2], "old_label": JOHN_LABELS[2], "new_label": flipped[JOHN_LABELS[2]]}
    ]
    assert report.to_dict()["updated"][0]["old_label"] == JOHN_LABELS[2]
    label = session.exec(select(Label).join(Text, Text.id == Label.text_id).where(Text.body == TEXTS[2])).one()
    assert label.label == flipped[JOHN_LABELS[2]]
    assert _count(session, Label) == 4


def test_identical_reupload_changes_nothing(session: Session, task) -> None:
    rows = label_rows("john", TEXTS[:5], JOHN_LABELS[:5])
    upsert_labels(session=session, task=task, rows=rows)
    john = get_user(session=session, name="john")
    before = label_snapshot(session=session, task=task, user=john)

    report = upsert_labels(session=session, task=task, rows=rows)

    assert (report.created, report.updated, report.unchanged) == (0, [], 5)
    # Not even the timestamps move, so an identical re-upload never makes an adapter stale.
    assert label_snapshot(session=session, task=task, user=john) == before
    assert _count(session, Label) == 5


def test_a_text_labelled_by_two_users_is_stored_once(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], ["work"]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:1], ["personal"]))

    assert _count(session, Text) == 1
    labels = session.exec(select(User.name, Label.label).join(User, User.id == Label.user_id).order_by(User.name)).all()
    assert [tuple(row) for row in labels] == [("jane", "personal"), ("john", "work")]


def test_the_same_text_in_another_task_reuses_the_text_row(session: Session, task) -> None:
    other = create_task(session=session, name="other", labels=["a", "b"])
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], ["work"]))
    upsert_labels(session=session, task=other, rows=label_rows("john", TEXTS[:1], ["a"]))
    assert _count(session, Text) == 1 and _count(session, Label) == 2


def test_bad_rows_are_reported_by_line_and_good_rows_kept(session: Session, task) -> None:
    rows = [
        LabelRow(line=1, user="john", text=TEXTS[0], label="work"),
        LabelRow(line=2, user="john", text=TEXTS[1], label="urgent"),
        LabelRow(line=3, user="john", text="   ", label="work"),
        LabelRow(line=4, user="john", text="x" * 81, label="work"),
        LabelRow(line=5, user="john doe", text=TEXTS[2], label="work"),
        LabelRow(line=6, user="john", text=TEXTS[3], label="work", split="dev"),
        LabelRow(line=7, user="jane", text=TEXTS[4], label="personal", split="test"),
    ]

    report = upsert_labels(session=session, task=task, rows=rows, max_text_chars=80)

    assert report.created == 2
    errors = {error.line: error.message for error in report.errors}
    assert list(errors) == [2, 3, 4, 5, 6]
    assert "'urgent'" in errors[2] and "['personal', 'work']" in errors[2]
    assert errors[3] == "text is empty"
    assert "81 characters" in errors[4] and "limit of 80" in errors[4]
    assert "'john doe'" in errors[5]
    assert "'dev'" in errors[6]
    stored = session.exec(select(Text.body, Label.split).join(Label, Label.text_id == Text.id).order_by(Text.body)).all()
    assert sorted(tuple(row) for row in stored) == sorted([(TEXTS[0], None), (TEXTS[4], "test")])
    assert session.exec(select(User).where(User.name == "john doe")).first() is None


def test_parse_errors_are_merged_into_the_report(session: Session, task) -> None:
    report = upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], ["work"], first_line=2),
                           errors=[RowError(line=3, message="invalid JSON"), RowError(line=1, message="missing 'text'")])
    assert [error.line for error in report.errors] == [1, 3]
    assert report.created == 1


def test_a_batch_over_the_row_limit_stores_nothing(session: Session, task) -> None:
    with pytest.raises(PayloadTooLargeError, match="5 rows is over the limit of 4"):
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:5], JOHN_LABELS[:5]), max_rows=4)
    assert _count(session, Label) == 0 and _count(session, Text) == 0 and _count(session, User) == 0


def test_an_item_over_256_characters_is_a_bad_row(session: Session, task) -> None:
    """label.item is VARCHAR(256): on PostgreSQL a longer one would fail the whole upload, not just its row."""
    rows = [LabelRow(line=1, user="john", text=TEXTS[0], label="work", item="i" * 300),
            LabelRow(line=2, user="john", text=TEXTS[1], label="personal", item="ok")]
    report = upsert_labels(session=session, task=task, rows=rows)
    assert [(error.line, error.message) for error in report.errors] == [(1, "item is 300 characters, over the limit of 256")]
    assert report.created == 1


def test_a_nul_character_is_refused_per_row_and_the_other_rows_are_kept(session: Session, task) -> None:
    """PostgreSQL cannot store NUL in text; the row is reported instead of failing the whole upload."""
    rows = label_rows("john", [TEXTS[0], "bad\x00text"], JOHN_LABELS[:2])
    rows.append(LabelRow(line=3, user="john", text=TEXTS[1], label=JOHN_LABELS[1], item="item\x00"))
    report = upsert_labels(session=session, task=task, rows=rows)
    assert report.created == 1
    assert [(e.line, e.message) for e in report.errors] == [
        (2, "text holds a NUL character (\\u0000) at character 3, which cannot be stored"),
        (3, "item holds a NUL character (\\u0000) at character 4, which cannot be stored"),
    ]
    assert [body for _, body in list_labels(session=session, task=task, user=get_user(session=session, name="john"))[0]] == [TEXTS[0]]


def test_a_lone_surrogate_is_refused_per_row_and_the_other_rows_are_kept(session: Session, task) -> None:
    """A JSON escape such as \\udc00 decodes to half a character: no database can store it, no response can hold it."""
    rows = label_rows("john", ["lone \udc00 x", TEXTS[0]], JOHN_LABELS[:2])
    rows.append(LabelRow(line=3, user="john", text=TEXTS[1], label="work\ud800"))
    report = upsert_labels(session=session, task=task, rows=rows)
    assert report.created == 1
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [
        (1, "text holds a lone surrogate U+DC00 at character 5"),
        (3, "label holds a lone surrogate U+D800 at character 4"),
    ]
    assert [body for _, body in list_labels(session=session, task=task, user=get_user(session=session, name="john"))[0]] == [TEXTS[0]]


def test_list_labels_pages_in_upload_order(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:7], JOHN_LABELS[:7]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:3], JANE_LABELS[:3]))
    john = get_user(session=session, name="john")

    first, count = list_labels(session=session, task=task, user=john, offset=0, limit=3)
    rest, _ = list_labels(session=session, task=task, user=john, offset=3, limit=100)
    beyond, count_beyond = list_labels(session=session, task=task, user=john, offset=7, limit=3)

    assert count == 7 and count_beyond == 7 and beyond == []
    assert len(first) == 3 and len(rest) == 4
    ids = [label.id for label, _ in first + rest]
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert all(label.user_id == john.id for label, _ in first + rest)
    assert {body for _, body in first + rest} == set(TEXTS[:7])


def test_delete_labels_only_deletes_own_ids(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:3], JOHN_LABELS[:3]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:3], JANE_LABELS[:3]))
    john, jane = get_user(session=session, name="john"), get_user(session=session, name="jane")
    john_ids = [label.id for label, _ in list_labels(session=session, task=task, user=john)[0]]
    jane_ids = [label.id for label, _ in list_labels(session=session, task=task, user=jane)[0]]

    with pytest.raises(NotFoundError, match=rf"label id\(s\) \[{jane_ids[0]}, 9999\] do not exist for user 'john'"):
        delete_labels(session=session, task=task, user=john, label_ids=[john_ids[0], jane_ids[0], 9999])
    assert _count(session, Label) == 6

    assert delete_labels(session=session, task=task, user=john, label_ids=john_ids[:2]) == 2
    assert [label.id for label, _ in list_labels(session=session, task=task, user=john)[0]] == john_ids[2:]
    assert list_labels(session=session, task=task, user=jane)[1] == 3

    assert delete_labels(session=session, task=task, user=jane) == 3
    assert list_labels(session=session, task=task, user=jane)[1] == 0
    assert list_labels(session=session, task=task, user=john)[1] == 1


def test_training_rows_per_user_and_pooled(session: Session, task) -> None:
    rows = label_rows("john", TEXTS[:4], JOHN_LABELS[:4])
    rows += [LabelRow(line=9, user="john", text=TEXTS[4], label=JOHN_LABELS[4], split="test")]
    upsert_labels(session=session, task=task, rows=rows)
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:2], JANE_LABELS[:2]))
    john = get_user(session=session, name="john")

    texts, labels = training_rows(session=session, task=task, user=john)
    assert (texts, labels) == (TEXTS[:5], JOHN_LABELS[:5])
    assert training_rows(session=session, task=task, user=john, split="test") == ([TEXTS[4]], [JOHN_LABELS[4]])
    pooled_texts, pooled_labels = training_rows(session=session, task=task, user=None)
    assert sorted(zip(pooled_texts, pooled_labels)) == sorted(
        list(zip(TEXTS[:5], JOHN_LABELS[:5])) + list(zip(TEXTS[:2], JANE_LABELS[:2]))
    )
    # A task prior's rows also say who gave each label.
    jane = get_user(session=session, name="jane")
    texts, labels, annotators = pooled_training_rows(session=session, task=task)
    assert sorted(zip(texts, labels, annotators)) == sorted(
        [(t, y, str(john.id)) for t, y in zip(TEXTS[:5], JOHN_LABELS[:5])]
        + [(t, y, str(jane.id)) for t, y in zip(TEXTS[:2], JANE_LABELS[:2])]
    )


def test_label_snapshot_counts_and_tracks_the_newest_change(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:3], JOHN_LABELS[:3]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:5], JANE_LABELS[:5]))
    john = get_user(session=session, name="john")

    count, newest = label_snapshot(session=session, task=task, user=john)
    assert count == 3 and newest is not None and newest.tzinfo is not None

    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], JANE_LABELS[:1]))
    count_after, newest_after = label_snapshot(session=session, task=task, user=john)
    assert count_after == 3 and newest_after > newest

    empty = create_task(session=session, name="empty", labels=["a", "b"])
    assert label_snapshot(session=session, task=empty, user=john) == (0, None)
