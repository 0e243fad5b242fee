"""Texts go with the last thing that named them: a task's, a user's or labels' deletion (or a label's removal from
a task's label set) removes the texts no other label, pool entry or skip names, keeps every other, and an upload
that races such a deletion stores its text anew."""
from __future__ import annotations

from sqlmodel import Session, select

from localize.db.models import PoolText, Text
from localize.db.session import session_scope
from localize.services import labels as label_service
from localize.services import texts as text_service
from localize.services.labels import delete_labels, upsert_labels
from localize.services.renames import delete_label, delete_user
from localize.services.tasks import create_task, delete_task
from localize.services.text_pool import PoolRow, add_texts
from localize.services.users import get_user

from .support import JANE_LABELS, JOHN_LABELS, LABELS, TEXTS, label_rows


def _bodies(session: Session) -> set[str]:
    return set(session.exec(select(Text.body)))


def test_deleting_a_task_removes_the_texts_only_it_named(session: Session, task, runtime) -> None:
    other = create_task(session=session, name="other", labels=LABELS)
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:6], JOHN_LABELS[:6]))
    upsert_labels(session=session, task=other, rows=label_rows("jane", TEXTS[4:8], JANE_LABELS[4:8]))
    add_texts(session=session, task=task, rows=[PoolRow(1, "only in the pool"), PoolRow(2, TEXTS[8])])
    add_texts(session=session, task=other, rows=[PoolRow(1, TEXTS[8])])
    deleted = delete_task(session=session, runtime=runtime, task=task)
    # TEXTS[0:4] and the pool-only text were the task's alone; TEXTS[4:6] and TEXTS[8] the other task still names.
    assert deleted.texts == 5 and deleted.to_dict()["texts"] == 5
    assert _bodies(session) == set(TEXTS[4:9])


def test_deleting_a_user_removes_what_only_they_labelled(session: Session, task, runtime) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:6], JOHN_LABELS[:6]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[3:6], JANE_LABELS[3:6]))
    add_texts(session=session, task=task, rows=[PoolRow(1, TEXTS[0])])
    report = delete_user(session=session, runtime=runtime, user=get_user(session=session, name="john"))
    assert report.texts == 2  # TEXTS[1:3]; TEXTS[0] is in the pool, TEXTS[3:6] Jane labelled
    assert _bodies(session) == {TEXTS[0], *TEXTS[3:6]}


def test_deleting_labels_removes_their_texts_unless_another_label_names_them(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:4], JOHN_LABELS[:4]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:1], JANE_LABELS[:1]))
    john = get_user(session=session, name="john")
    rows, _ = label_service.list_labels(session=session, task=task, user=john)
    first = [label.id for label, _ in rows][:2]
    assert delete_labels(session=session, task=task, user=john, label_ids=first) == 2
    assert _bodies(session) == {TEXTS[0], *TEXTS[2:4]}  # TEXTS[0]: Jane's label names it
    assert delete_labels(session=session, task=task, user=john) == 2
    assert _bodies(session) == {TEXTS[0]}


def test_removing_a_label_from_the_set_removes_the_texts_only_its_labels_named(session: Session, task) -> None:
    three = create_task(session=session, name="three", labels=["personal", "work", "spam"])
    rows = label_rows("john", TEXTS[:4], ["spam", "spam", "work", "personal"])
    upsert_labels(session=session, task=three, rows=rows)
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[1:2], JANE_LABELS[1:2]))
    edit = delete_label(session=session, task=three, label="spam")
    assert edit.rows == 2 and _bodies(session) == set(TEXTS[1:4])  # TEXTS[1]: Jane's label in the other task


def test_a_text_named_again_before_the_cleanup_is_kept(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:2], JOHN_LABELS[:2]))
    ids = text_service.text_ids_named(session, task_id=task.id)
    john = get_user(session=session, name="john")
    for label, _ in label_service.list_labels(session=session, task=task, user=john)[0]:
        session.delete(label)
    session.commit()
    kept = session.exec(select(Text.id).where(Text.body == TEXTS[0])).one()
    session.add(PoolText(task_id=task.id, text_id=kept))  # another upload names it between the two steps
    session.commit()
    assert text_service.delete_unnamed_texts(session, ids) == 1
    assert _bodies(session) == {TEXTS[0]}


def test_an_upload_whose_text_is_deleted_under_it_runs_again_and_stores_it(session: Session, task, runtime,
                                                                           monkeypatch) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], JOHN_LABELS[:1]))
    # Jane exists already, so her upload writes nothing before its labels (a write would hold SQLite's lock).
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[5:6], JANE_LABELS[5:6]))
    calls = []
    real = label_service._ensure_texts

    def ensure_then_lose(inner: Session, bodies: list[str]) -> dict[str, int]:
        ids = real(inner, bodies)
        if not calls:  # between the lookup and the label's insert, another process deletes the text
            with session_scope(runtime.database) as other:
                john = get_user(session=other, name="john")
                delete_labels(session=other, task=task, user=john)
        calls.append(ids)
        return ids

    monkeypatch.setattr(label_service, "_ensure_texts", ensure_then_lose)
    report = upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:1], JANE_LABELS[:1]))
    assert len(calls) == 2 and calls[0] != calls[1]  # the second attempt stored the text anew
    assert report.created == 1 and _bodies(session) == {TEXTS[0], TEXTS[5]}
