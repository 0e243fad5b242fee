"""Admin renames and deletions: tasks, users and labels over HTTP, each refused to user keys."""
from __future__ import annotations

from api_support import ADMIN, JOHN_LABELS, TASK, TEXTS, rows

from localize.db.models import Label, User


def test_rename_a_task_and_a_user(ws, john):
    renamed = ws.client.post(f"/tasks/{TASK}/rename", json={"name": "notes-2"}, headers=ADMIN)
    assert renamed.status_code == 200 and renamed.json()["name"] == "notes-2"
    assert ws.client.get(f"/tasks/{TASK}", headers=ADMIN).status_code == 404
    user = ws.client.patch("/users/john", json={"name": "jon"}, headers=ADMIN)
    assert user.status_code == 200 and user.json()["name"] == "jon"
    # john's key still works, for the renamed user
    assert ws.client.get("/tasks/notes-2/users/jon/labels", headers=john).status_code == 200
    taken = ws.client.patch("/users/jon", json={"name": "jon"}, headers=ADMIN)
    assert taken.status_code == 200  # renaming to the same name is a no-op
    ws.create_user("jane")
    clash = ws.client.patch("/users/jon", json={"name": "jane"}, headers=ADMIN)
    assert clash.status_code == 409 and "user 'jane' already exists" in clash.json()["detail"]
    bad = ws.client.post("/tasks/notes-2/rename", json={"name": "has space"}, headers=ADMIN)
    assert bad.status_code == 422


def test_user_keys_may_not_rename_or_delete(ws, john):
    assert ws.client.patch("/users/john", json={"name": "x"}, headers=john).status_code == 403
    assert ws.client.delete("/users/john", headers=john).status_code == 403
    assert ws.client.delete(f"/tasks/{TASK}/label-set/work", headers=john).status_code == 403


def test_delete_a_user_with_their_labels(ws, john):
    ws.upload("john", rows(TEXTS[:6], JOHN_LABELS[:6]), headers=john)
    deleted = ws.client.delete("/users/john", headers=ADMIN)
    assert deleted.status_code == 200
    assert deleted.json() == {"user": "john", "labels": 6, "adapter_versions": 0, "jobs": 0, "texts": 6,
                             "files_not_removed": []}
    assert ws.count(User) == 0 and ws.count(Label) == 0
    assert ws.client.get(f"/tasks/{TASK}/users/john/labels", headers=john).status_code == 401  # the key died too


def test_rename_merge_and_delete_labels(ws, john):
    ws.client.post("/tasks", json={"name": "typos", "labels": ["work", "wrok", "personal"]}, headers=ADMIN)
    ws.upload("john", [{"text": "a", "label": "wrok"}, {"text": "b", "label": "work"},
                       {"text": "c", "label": "personal"}], task="typos", headers=john)
    merged = ws.client.patch("/tasks/typos/label-set/wrok", json={"name": "work"}, headers=ADMIN)
    assert merged.status_code == 200
    assert merged.json() == {"task": "typos", "label": "wrok", "new_label": "work", "labels": ["work", "personal"],
                             "rows": 1, "users": ["john"]}
    labels = ws.client.get("/tasks/typos/users/john/labels", headers=john).json()["data"]
    assert sorted(row["label"] for row in labels) == ["personal", "work", "work"]
    unknown = ws.client.delete("/tasks/typos/label-set/wrk", headers=ADMIN)
    assert unknown.status_code == 404 and "did you mean 'work'?" in unknown.json()["detail"]
    last_two = ws.client.delete("/tasks/typos/label-set/work", headers=ADMIN)
    assert last_two.status_code == 422 and "at least 2 labels" in last_two.json()["detail"]
