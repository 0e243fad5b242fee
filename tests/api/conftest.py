"""API fixtures: an app on a temporary home with an admin key, a TestClient, and factories for tasks, users with
keys, label uploads and training (queued over HTTP, run here with ``Worker.run_once()`` as a worker would)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import JANE_LABELS, JOHN_LABELS, TEXTS, Trained, Workspace, make_settings, rows
from fastapi.testclient import TestClient

from localize.api.app import create_app
from localize.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request) -> str:
    """Every test on a fresh app runs on SQLite and on PostgreSQL (the shared ``trained`` workspace: SQLite)."""
    return request.param


@pytest.fixture
def settings(tmp_path: Path, database_at_head) -> Settings:
    return make_settings(tmp_path, **database_at_head(tmp_path))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def ws(client: TestClient) -> Workspace:
    return Workspace(client)


@pytest.fixture
def task(ws: Workspace) -> dict:
    return ws.create_task()


@pytest.fixture
def john(ws: Workspace, task: dict) -> dict[str, str]:  # noqa: ARG001
    """John's key headers; he exists, but has no labels yet."""
    return ws.create_user("john")


@pytest.fixture
def jane(ws: Workspace, task: dict) -> dict[str, str]:  # noqa: ARG001
    return ws.create_user("jane")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Shared and read-only: task ``notes`` where John and Jane labelled the same texts in opposite ways and each
    has a trained adapter (version 1). Tests that change state make their own workspace."""
    with TestClient(create_app(make_settings(tmp_path_factory.mktemp("trained")))) as client:
        ws = Trained(client)
        ws.create_task()
        ws.john, ws.jane = ws.create_user("john"), ws.create_user("jane")
        ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=ws.john)
        ws.upload("jane", rows(TEXTS, JANE_LABELS), headers=ws.jane)
        ws.jobs = {"john": ws.queue("john", headers=ws.john), "jane": ws.queue("jane", headers=ws.jane)}
        ws.run_jobs()
        yield ws
