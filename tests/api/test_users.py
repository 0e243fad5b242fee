"""Users and keys: created by the admin; a key is shown once, works at once, and replaces the previous one."""
from __future__ import annotations

from localize.db.models import User

from api_support import ADMIN, bearer


def test_create_user_returns_public_fields_only(client):
    response = client.post("/users", json={"name": "john"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "john" and isinstance(body["id"], int)
    assert body["created_at"].endswith("Z")  # timezone-aware
    assert "api_key_hash" not in body


def test_duplicate_user_is_409_naming_it(ws):
    ws.client.post("/users", json={"name": "john"}, headers=ADMIN)
    response = ws.client.post("/users", json={"name": "john"}, headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/conflict"
    assert "'john' already exists" in response.json()["detail"]
    assert ws.count(User) == 1


def test_bad_user_name_is_422_naming_it(ws):
    response = ws.client.post("/users", json={"name": "no spaces please"}, headers=ADMIN)
    assert response.status_code == 422
    body = response.json()
    # The service names the value; a pattern on UserCreate would name the field instead.
    assert "user name 'no spaces please'" in body["detail"] or body["errors"][0]["field"] == "body.name"
    assert ws.count(User) == 0


def test_missing_user_name_is_422_naming_the_field(ws):
    response = ws.client.post("/users", json={}, headers=ADMIN)
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["body.name"]
    assert ws.count(User) == 0


def test_list_users_pages_and_filters_by_task(ws, task):
    for name in ("carol", "alice", "bob"):
        ws.create_user(name)
    ws.upload("bob", [{"text": "Dinner at the zoo", "label": "personal"}])
    page = ws.client.get("/users", params={"limit": 2}, headers=ADMIN).json()
    assert page["count"] == 3
    assert [user["name"] for user in page["data"]] == ["alice", "bob"]
    labelled = ws.client.get("/users", params={"task": task["name"]}, headers=ADMIN).json()
    assert [user["name"] for user in labelled["data"]] == ["bob"]


def test_new_key_works_and_replaces_the_old_one(ws, task):  # noqa: ARG001
    old = ws.create_user("john")
    assert ws.client.get("/tasks", headers=old).status_code == 200
    response = ws.client.post("/users/john/keys", headers=ADMIN)
    assert response.status_code == 201
    assert response.json()["user"] == "john"
    new = bearer(response.json()["api_key"])
    assert ws.client.get("/tasks", headers=new).status_code == 200
    assert ws.client.get("/tasks", headers=old).status_code == 401


def test_key_for_unknown_user_is_404(client):
    response = client.post("/users/ghost/keys", headers=ADMIN)
    assert response.status_code == 404
    assert "user 'ghost' does not exist" in response.json()["detail"]
