"""Service-test fixtures: a session on a fresh runtime (on SQLite and on PostgreSQL) and the two-label ``notes``
task."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session

from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services.tasks import create_task

from .support import LABELS


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request) -> str:
    return request.param


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    with session_scope(runtime.database) as session:
        yield session


@pytest.fixture
def task(session: Session):
    return create_task(session=session, name="notes", labels=LABELS)
