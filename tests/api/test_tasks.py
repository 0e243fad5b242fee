"""Tasks: the admin creates them; any valid key reads them."""
from __future__ import annotations

import pytest

from localize.db.models import Task

from api_support import ADMIN, LABELS


def test_create_and_read_task(ws):
    created = ws.client.post("/tasks", json={"name": "notes", "labels": LABELS, "description": "my notes"},
                             headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["labels"] == LABELS
    user = ws.create_user("john")
    one = ws.client.get("/tasks/notes", headers=user)
    assert one.status_code == 200
    assert one.json() == created.json()
    listing = ws.client.get("/tasks", headers=user).json()
    assert listing["count"] == 1 and listing["data"][0]["name"] == "notes"


def test_unknown_task_is_404_naming_it(ws, john):
    response = ws.client.get("/tasks/nope", headers=john)
    assert response.status_code == 404
    assert response.json()["detail"] == "task 'nope' does not exist"


def test_duplicate_task_is_409(ws, task):
    response = ws.client.post("/tasks", json={"name": task["name"], "labels": LABELS}, headers=ADMIN)
    assert response.status_code == 409
    assert f"task {task['name']!r} already exists" in response.json()["detail"]
    assert ws.count(Task) == 1


@pytest.mark.parametrize(
    ("labels", "message"),
    [(["only"], "at least 2 labels"), (["a", "a"], "duplicates"), (["a", ""], "must be non-empty")],
)
def test_bad_label_set_is_422_naming_it(ws, labels, message):
    response = ws.client.post("/tasks", json={"name": "t", "labels": labels}, headers=ADMIN)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert ws.count(Task) == 0


def test_a_tasks_target_accuracy_is_set_at_creation_and_changed_by_the_admin(ws):
    client = ws.client
    created = client.post("/tasks", json={"name": "abstaining", "labels": ["a", "b"], "target_accuracy": 0.8},
                          headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["target_accuracy"] == 0.8
    assert client.post("/tasks", json={"name": "plain", "labels": ["a", "b"]}, headers=ADMIN).json()[
        "target_accuracy"] == 0.9
    changed = client.patch("/tasks/abstaining", json={"target_accuracy": 0.95}, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["target_accuracy"] == 0.95
    assert client.get("/tasks/abstaining", headers=ADMIN).json()["target_accuracy"] == 0.95
    for bad in ({"target_accuracy": 0}, {"target_accuracy": 1.01}, {"labels": ["x", "y"]}):
        refused = client.patch("/tasks/abstaining", json=bad, headers=ADMIN)
        assert refused.status_code == 422, refused.text
    assert client.get("/tasks/abstaining", headers=ADMIN).json()["target_accuracy"] == 0.95
    assert client.patch("/tasks/abstaining", json={"target_accuracy": 0.5}).status_code == 401
