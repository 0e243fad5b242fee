"""The hot prediction route answers from a cache of keys, tasks, users and serving versions. These tests show the
cache is never stale: a revoked key or a newly activated version is seen by the very next request, whether the
change came through this server or was committed by another process (a worker, the CLI, another server)."""
from __future__ import annotations

import re

import pytest
from api_support import ADMIN, JOHN_LABELS, TASK, TEXTS, rows
from sqlalchemy import event, update
from sqlmodel import Session

from localize.db.models import AdapterVersion, User
from localize.db.session import make_engine

PREDICT = f"/tasks/{TASK}/users/john/predict"
LOOKUP_TABLES = re.compile(r'\b(FROM|JOIN|UPDATE)\s+"?(user|task|adapter_version)"?(\s|$)', re.IGNORECASE)


def predict(ws, headers: dict, texts: list[str] | None = None):  # noqa: ANN001, ANN201
    return ws.client.post(PREDICT, json={"texts": texts or TEXTS[:2]}, headers=headers)


def answered_version(ws, headers: dict) -> int:  # noqa: ANN001
    response = predict(ws, headers)
    assert response.status_code == 200, response.text
    (version,) = {row["version"] for row in response.json()}
    return version


@pytest.fixture
def john_trained(ws) -> dict[str, str]:  # noqa: ANN001
    """John with version 1 active; returns his key headers."""
    ws.create_task()
    john = ws.create_user("john")
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    ws.train("john")
    return john


@pytest.fixture
def john_trained_twice(ws, john_trained) -> dict[str, str]:  # noqa: ANN001
    """John with versions 1 and 2 (2 active); returns his key headers."""
    ws.train("john")
    return john_trained


def other_process(ws):  # noqa: ANN001, ANN201
    """A database engine of its own, as a worker or the CLI in another process would have."""
    return make_engine(str(ws.runtime.database.url.render_as_string(hide_password=False)))


def test_a_revoked_key_is_refused_at_once(ws, john_trained) -> None:  # noqa: ANN001
    old = john_trained
    assert predict(ws, old).status_code == 200
    assert predict(ws, old).status_code == 200  # now cached
    new_key = ws.client.post("/users/john/keys", headers=ADMIN)
    assert new_key.status_code == 201
    refused = predict(ws, old)
    assert refused.status_code == 401 and "invalid API key" in refused.text
    assert predict(ws, {"Authorization": f"Bearer {new_key.json()['api_key']}"}).status_code == 200


def test_a_newly_activated_version_answers_at_once(ws, john_trained_twice) -> None:  # noqa: ANN001
    john = john_trained_twice
    assert answered_version(ws, john) == 2
    assert answered_version(ws, john) == 2
    activated = ws.client.post(f"/tasks/{TASK}/users/john/adapters/1/activate", headers=ADMIN)
    assert activated.status_code == 200, activated.text
    assert answered_version(ws, john) == 1
    ws.train("john")  # the worker registers and activates version 3
    assert answered_version(ws, john) == 3


def test_changes_committed_by_another_process_are_seen_at_once(ws, john_trained_twice) -> None:  # noqa: ANN001
    john = john_trained_twice
    assert answered_version(ws, john) == 2
    engine = other_process(ws)
    try:
        with Session(engine) as session:  # what activating version 1 from the CLI commits
            session.exec(update(AdapterVersion).values(is_active=AdapterVersion.version == 1))
            session.commit()
        assert answered_version(ws, john) == 1
        with Session(engine) as session:  # and revoking John's key
            session.exec(update(User).where(User.name == "john").values(api_key_hash=None))
            session.commit()
        assert predict(ws, john).status_code == 401
    finally:
        engine.dispose()


def test_a_warm_prediction_runs_no_sql(ws, john_trained) -> None:  # noqa: ANN001
    john = john_trained
    assert predict(ws, john).status_code == 200
    statements: list[str] = []

    def note(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        statements.append(statement)

    event.listen(ws.runtime.database, "before_cursor_execute", note)
    try:
        for text in TEXTS[:4]:  # new texts, same user: every lookup cached, the adapter resident
            assert predict(ws, john, [text]).status_code == 200
            assert predict(ws, ADMIN, [text]).status_code == 200
    finally:
        event.remove(ws.runtime.database, "before_cursor_execute", note)
    # Background pollers of other features may query their own tables meanwhile; none of the lookups ran.
    assert [statement for statement in statements if LOOKUP_TABLES.search(statement)] == []


def test_a_cold_cache_gives_the_same_answers_and_errors(ws, john_trained) -> None:  # noqa: ANN001
    john = john_trained
    first = predict(ws, john)
    again = predict(ws, john)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    unknown_task = ws.client.post("/tasks/nope/users/john/predict", json={"texts": ["x"]}, headers=john)
    assert unknown_task.status_code == 404 and "nope" in unknown_task.text
    other_user = ws.client.post(f"/tasks/{TASK}/users/jane/predict", json={"texts": ["x"]}, headers=john)
    assert other_user.status_code == 404 and "'jane' does not exist" in other_user.text
    assert ws.client.post(PREDICT, content="texts", headers={**john, "Content-Type": "text/plain"}).status_code == 415
    assert ws.client.post(PREDICT, json={"texts": ["x"]}, headers={"Authorization": "Bearer nope"}).status_code == 401
