"""Fault suite, database: PostgreSQL restarts while labels are uploaded. Every upload is either stored whole or
answered 503 with Retry-After (never a 500), and retrying it stores each label exactly once.

The server restarted is a private one (scripts/postgres.sh with a cluster folder of this test's own), so tests
sharing the suite's PostgreSQL server are not disturbed; the API runs in this process."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from localize.api.app import create_app
from localize.db.models import Label, Text
from localize.db.session import make_engine
from localize.settings import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "fault-suite-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BATCH = 5


def _postgres(folder: Path, *action: str) -> str:
    env = {**os.environ, "LOCALIZE_PG_DIR": str(folder), "LOCALIZE_PG_DATABASE": "restarted"}
    env.pop("LOCALIZE_PG_PORT", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), *action], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server of this test's own: ``(url, cluster folder)``."""
    if not os.environ.get("LOCALIZE_TEST_POSTGRES_URL"):
        reason = "PostgreSQL is not set up here (LOCALIZE_TEST_POSTGRES_URL is unset; scripts/test.sh sets it)"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(reason)
        pytest.skip(reason)
    # Under the system's temporary folder itself: when run as root, the server's own user must reach it.
    folder = Path(tempfile.gettempdir()) / f"localize-pg-restart-{uuid.uuid4().hex[:10]}"
    try:
        yield _postgres(folder, "start", "--no-fsync"), folder
    finally:
        try:
            _postgres(folder, "stop")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def test_uploads_during_a_postgres_restart_are_stored_whole_or_retryable(tmp_path: Path, private_postgres) -> None:
    url, folder = private_postgres
    settings = Settings(home=tmp_path, admin_key=ADMIN_KEY, database_url=url, rate_limit_per_second=None)
    with TestClient(create_app(settings)) as client:
        assert client.post("/tasks", json={"name": "notes", "labels": ["personal", "work"]},
                           headers=ADMIN).status_code == 201
        assert client.post("/users", json={"name": "ann"}, headers=ADMIN).status_code == 201
        key = {"Authorization": "Bearer " + client.post("/users/ann/keys", headers=ADMIN).json()["api_key"]}

        restarted = threading.Event()
        restart_failures: list[BaseException] = []

        def restart() -> None:
            try:
                time.sleep(0.3)
                _postgres(folder, "stop")
                time.sleep(0.5)  # uploads meet a server that is down, not only dropped connections
                # The same port: the app keeps the URL it started with.
                assert _postgres(folder, "start", "--no-fsync") == url, "the restarted server moved to a new URL"
            except BaseException as error:  # reported by the upload loop, not lost in this thread
                restart_failures.append(error)
            finally:
                restarted.set()

        restarter = threading.Thread(target=restart, daemon=True)
        restarter.start()
        statuses: Counter[int] = Counter()
        batch = 0
        deadline = time.monotonic() + 120
        while not restarted.is_set() or batch < 10:
            assert not restart_failures, restart_failures[0]
            assert time.monotonic() < deadline, statuses
            labels = [{"text": f"note {batch}.{row}", "label": "work" if row % 2 else "personal"}
                      for row in range(BATCH)]
            while True:  # a client's retry loop
                response = client.post("/tasks/notes/users/ann/labels", json={"labels": labels}, headers=key)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    report = response.json()
                    assert report["accepted"] == BATCH and not report["errors"], report
                    # Stored once: new on the first success, unchanged if a "failed" attempt had committed.
                    assert report["created"] + report["unchanged"] == BATCH, report
                    break
                assert response.status_code == 503, (response.status_code, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["type"] == "/problems/database-unavailable"
                time.sleep(0.1)  # shorter than Retry-After: the test need not wait that long
                assert not restart_failures, restart_failures[0]
                assert time.monotonic() < deadline, statuses
            batch += 1
        restarter.join(timeout=60)

    assert statuses[503] >= 1, f"no upload met the restart: {statuses}"
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            texts = session.exec(select(Text.body).join(Label, Label.text_id == Text.id)).all()
    finally:
        engine.dispose()
    expected = {f"note {b}.{row}" for b in range(batch) for row in range(BATCH)}
    assert Counter(texts) == Counter(expected)  # every label of every upload, each exactly once
