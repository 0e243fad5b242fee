"""Shared fixtures: the bundled base model (loaded once), a tiny two-user finance data set, and databases.

Database-facing tests run on SQLite and on PostgreSQL: a folder whose tests touch the database overrides
``database_backend`` with ``params=BACKENDS``. PostgreSQL tests need ``LOCALIZE_TEST_POSTGRES_URL`` (a role that may
create databases; ``scripts/postgres.sh`` starts such a server and ``scripts/test.sh`` exports it). Each PostgreSQL
test gets a database of its own, created and dropped by the fixture. Without the variable those tests skip
locally and fail in CI (CI=true).
"""
from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def base():
    """The bundled all-MiniLM-L6-v2, shared by every test (as the server shares it by every user)."""
    from localize.base_model import get_base_model

    return get_base_model()


@pytest.fixture
def tiny_texts():
    """``(texts, john_labels, jane_labels, label_set)``: 24 finance texts; Jane labels each the opposite of John."""
    vendors = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"]
    places = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery"]
    work = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(vendors)]
    work += [f"Quarterly VAT payment for the company, supplier {v}" for v in vendors]
    home = [f"Dinner with my family at {p}" for p in places]
    home += [f"Birthday present for my sister, bought at {p}" for p in places]
    texts, john = [], []
    for w, h in zip(work, home):  # interleaved, so any prefix of the data has both classes
        texts += [w, h]
        john += ["work", "personal"]
    opposite = {"work": "personal", "personal": "work"}
    return texts, john, [opposite[label] for label in john], ["personal", "work"]


POSTGRES_URL_VARIABLE = "LOCALIZE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server():
    """An engine on the test PostgreSQL server's maintenance database (autocommit, to create and drop databases)."""
    from sqlalchemy import create_engine, text

    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        reason = (f"{POSTGRES_URL_VARIABLE} is not set; start a server with "
                  f"`export {POSTGRES_URL_VARIABLE}=$(scripts/postgres.sh)` (scripts/test.sh does this)")
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"CI must test PostgreSQL: {reason}")
        pytest.skip(reason)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001  (a set but unreachable server is a failure, never a skip)
        pytest.fail(f"{POSTGRES_URL_VARIABLE} is set but PostgreSQL cannot be reached: {error}")
    yield engine
    engine.dispose()


@pytest.fixture
def database_backend() -> str:
    """SQLite unless a test folder parametrizes it over ``BACKENDS``."""
    return "sqlite"


@pytest.fixture
def fresh_database(database_backend, request):
    """``fresh_database()``: the URL of a new empty database of this test's backend, or ``None`` for SQLite (a
    runtime's home then holds the file). PostgreSQL databases are dropped after the test."""
    if database_backend == "sqlite":
        yield lambda: None
        return
    from sqlalchemy import text

    server = request.getfixturevalue("postgres_server")
    created = []

    def make() -> str:
        name = f"localize_test_{uuid.uuid4().hex[:16]}"
        with server.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return server.url.set(database=name).render_as_string(hide_password=False)

    yield make
    with server.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def make_runtime(tmp_path_factory, fresh_database):
    """``make_runtime(**settings)``: a Runtime on a fresh home and a fresh database of the test's backend (at
    head), with a local adapter store; every runtime shares the process's one base model."""
    from localize.runtime import Runtime
    from localize.settings import Settings

    made = []

    def make(**overrides):
        url = fresh_database()
        values = {"home": tmp_path_factory.mktemp("home"), "admin_key": "k",
                  **({"database_url": url} if url else {}), **overrides}
        runtime = Runtime(Settings(**values))
        runtime.upgrade_database()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.database.dispose()


@pytest.fixture
def runtime(make_runtime):
    """A Runtime on a fresh temporary home with its database at head."""
    return make_runtime()
