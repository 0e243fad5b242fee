"""Deleting a task in the service: rows in one transaction, then the files; a file the store cannot remove is
reported, never a reason to keep rows; adapters this process holds resident are dropped."""
from __future__ import annotations

from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Label, Task
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task, delete_task, deletion_plan
from localize.services.users import get_user

from .support import JOHN_LABELS, TEXTS, label_rows


class _Engine:
    def __init__(self) -> None:
        self.evicted: list = []

    def evict(self, key) -> None:  # noqa: ANN001
        self.evicted.append(key)


def test_delete_task_reports_files_it_could_not_remove_and_evicts_resident_adapters(session: Session, task,
                                                                                     runtime, monkeypatch) -> None:
    other = create_task(session=session, name="other", labels=["personal", "work"])
    for each in (task, other):
        upsert_labels(session=session, task=each, rows=label_rows("john", TEXTS[:4], JOHN_LABELS[:4]))
    john = get_user(session=session, name="john")
    session.add(AdapterVersion(task_id=task.id, user_id=john.id, version=1, method="head",
                               store_key=f"task-{task.id}/user-{john.id}"))
    session.commit()

    plan = deletion_plan(session=session, store=runtime.store, task=task)
    assert (plan.users, plan.labels, plan.adapter_versions, plan.jobs) == (1, 4, 1, 0)
    assert plan.files == [runtime.store.location(f"task-{task.id}/user-{john.id}", 1)]

    def broken_delete(key: str, version: int) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(runtime.store, "delete", broken_delete)
    runtime.__dict__["engine"] = engine = _Engine()  # as if this process had predicted
    deleted = delete_task(session=session, runtime=runtime, task=task)
    assert deleted.files_not_removed == plan.files
    assert engine.evicted == [(f"task-{task.id}/user-{john.id}", 1)]
    assert [row.name for row in session.exec(select(Task))] == ["other"]
    assert session.exec(select(AdapterVersion)).all() == []
    assert {label.task_id for label in session.exec(select(Label))} == {other.id}
