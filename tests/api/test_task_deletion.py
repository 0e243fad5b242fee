"""DELETE /tasks/{task} (admin): the task goes with every user's labels in it, its adapter versions and their
files, and its jobs; users, their keys and other tasks stay. A task stored before text was checked (a label
holding a lone surrogate, which broke every task listing) can be deleted this way."""
from __future__ import annotations

from pathlib import Path

from api_support import ADMIN, JOHN_LABELS, TASK, TEXTS, rows
from sqlalchemy import update
from sqlmodel import Session
from test_errors import problem

from localize.db.models import Job, JobState


def test_deleting_a_task_removes_labels_versions_files_and_jobs(ws, john):
    ws.create_task("other")
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    ws.upload("john", rows(TEXTS[:4], JOHN_LABELS[:4]), task="other", headers=john)
    ws.train("john", headers=john)
    stored = [path for path in Path(ws.runtime.settings.home, "adapters").rglob("*") if path.is_file()]
    assert stored

    response = ws.client.delete(f"/tasks/{TASK}", headers=ADMIN)
    assert response.status_code == 200, response.text
    deleted = response.json()
    assert {key: deleted[key] for key in ("task", "users", "labels", "adapter_versions", "jobs")} == {
        "task": TASK, "users": 1, "labels": len(TEXTS), "adapter_versions": 1, "jobs": 1}
    assert len(deleted["files"]) == 1 and deleted["files_not_removed"] == []
    assert not [path for path in stored if path.exists()]

    snapshot = ws.snapshot()
    assert snapshot["tasks"] == ["other"] and snapshot["jobs"] == [] and snapshot["adapters"] == []
    assert {task for _, task, *_ in snapshot["labels"]} == {"other"}
    assert "john" in snapshot["users"]
    assert ws.client.get("/tasks/other/users/john/labels", headers=john).json()["count"] == 4
    problem(ws.client.get(f"/tasks/{TASK}", headers=ADMIN), 404, f"task {TASK!r} does not exist")
    problem(ws.client.delete(f"/tasks/{TASK}", headers=ADMIN), 404)
    # The name is free again, and the new task starts empty.
    ws.create_task()
    assert ws.client.get(f"/tasks/{TASK}/users/john/labels", headers=john).json()["count"] == 0


def test_a_task_stored_with_a_lone_surrogate_can_be_deleted_and_listing_works_again(ws):
    with ws.runtime.database.begin() as connection:  # as a server stored it before text was checked
        connection.exec_driver_sql("INSERT INTO task (name, labels, description, created_at) VALUES "
                                   "('surrogate-task', '[\"a\\ud800\", \"b\"]', '', CURRENT_TIMESTAMP)")
    response = ws.client.delete("/tasks/surrogate-task", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert ws.client.get("/tasks", headers=ADMIN).json() == {"data": [], "count": 0}


def test_only_the_admin_deletes_a_task_and_never_while_a_job_runs(ws, john):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    problem(ws.client.delete(f"/tasks/{TASK}", headers=john), 403, type_="forbidden")
    problem(ws.client.delete(f"/tasks/{TASK}"), 401)
    job = ws.queue("john", headers=john)
    with Session(ws.runtime.database) as session:
        session.exec(update(Job).where(Job.id == job["id"]).values(state=JobState.RUNNING))
        session.commit()
    before = ws.snapshot()
    problem(ws.client.delete(f"/tasks/{TASK}", headers=ADMIN), 409, f"job {job['id']}", "is running",
            type_="conflict")
    assert ws.snapshot() == before
