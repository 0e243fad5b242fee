"""Shared fixtures: the bundled base model (loaded once), a tiny two-user finance data set, and databases.

Database-facing tests run on SQLite and on PostgreSQL: a folder whose tests touch the database overrides
``database_backend`` with ``params=BACKENDS``. PostgreSQL tests need ``LOCALIZE_TEST_POSTGRES_URL`` (a role that may
create databases; ``scripts/postgres.sh`` starts such a server and ``scripts/test.sh`` exports it). Each PostgreSQL
test gets a database of its own, created and dropped by the fixture. Without the variable those tests skip
locally and fail in CI (CI=true).
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _temporary_workspace(tmp_path_factory):
    """No test touches the user's workspace (the default LOCALIZE_HOME is a per-user data folder): every test that
    names no home of its own gets this session's temporary one."""
    previous = os.environ.get("LOCALIZE_HOME")
    os.environ["LOCALIZE_HOME"] = str(tmp_path_factory.mktemp("workspace"))
    yield
    if previous is None:
        os.environ.pop("LOCALIZE_HOME", None)
    else:
        os.environ["LOCALIZE_HOME"] = previous


@pytest.fixture(scope="session")
def base():
    """The bundled all-MiniLM-L6-v2, shared by every test (as the server shares it by every user)."""
    from localize.base_model import get_base_model

    return get_base_model()


@pytest.fixture(scope="session")
def cpu_base(base):
    """The bundled base on the CPU, for tests of what only a CPU does (bfloat16 autocast where it computes bfloat16
    natively): ``base`` itself unless the tests run on a GPU."""
    from localize.base_model import BaseModel

    return base if base.device.type == "cpu" else BaseModel(device="cpu")


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


@pytest.fixture(scope="session")
def sqlite_at_head(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per session: copying it is much cheaper than migrating each test's."""
    from localize.db.session import upgrade_database

    path = tmp_path_factory.mktemp("schema-at-head") / "localize.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_at_head(postgres_server):
    """A PostgreSQL database migrated to head once per session, which test databases are created from."""
    from sqlalchemy import text

    from localize.db.session import upgrade_database

    name = f"localize_template_{uuid.uuid4().hex[:16]}"
    with postgres_server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade_database(postgres_server.url.set(database=name).render_as_string(hide_password=False))
    yield name
    with postgres_server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_at_head(database_backend, request, fresh_database):
    """``database_at_head(home)``: settings for a new database of this test's backend already at head (for
    SQLite, ``home``'s file is a copy of one migrated once; for PostgreSQL, a database made from one)."""
    def make(home: Path) -> dict:
        if database_backend == "postgresql":
            return {"database_url": fresh_database(at_head=True)}
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_at_head"), home / "localize.db")
        return {}

    return make


@pytest.fixture
def fresh_database(database_backend, request):
    """``fresh_database()``: the URL of a new empty database of this test's backend, or ``None`` for SQLite (a
    runtime's home then holds the file); ``fresh_database(at_head=True)``: one already migrated (PostgreSQL
    only). PostgreSQL databases are dropped after the test."""
    if database_backend == "sqlite":
        yield lambda at_head=False: None
        return
    from sqlalchemy import exc, text

    server = request.getfixturevalue("postgres_server")
    created = []

    def make(at_head: bool = False) -> str:
        name = f"localize_test_{uuid.uuid4().hex[:16]}"
        template = f' TEMPLATE "{request.getfixturevalue("postgres_at_head")}"' if at_head else ""
        with server.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{template}'))
        created.append(name)
        return server.url.set(database=name).render_as_string(hide_password=False)

    yield make
    with server.connect() as connection:
        for name in created:
            for attempt in range(10):  # a backend we may not end (an autovacuum worker) finishes within moments
                try:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    break
                except exc.ProgrammingError:
                    if attempt == 9:
                        raise
                    time.sleep(0.5)


@pytest.fixture
def make_runtime(tmp_path_factory, database_at_head):
    """``make_runtime(**settings)``: a Runtime on a fresh home and a fresh database of the test's backend (at
    head), with a local adapter store; every runtime shares the process's one base model."""
    from localize.runtime import Runtime
    from localize.settings import Settings

    made = []

    def make(**overrides):
        home = tmp_path_factory.mktemp("home")
        values = {"home": home, "admin_key": "k", **database_at_head(home), **overrides}
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


@pytest.fixture
def fast_recipe_candidates(monkeypatch):
    """Whole-task training chooses between two fast stand-ins (the real candidates train LoRA priors: minutes):
    ``loose-head`` learns each user; ``stubborn-head`` holds every head at the pooled one, so a user who labels
    against the majority is always wrong and it must lose. Returns ``(stubborn, loose)``."""
    from localize import recipe_candidates
    from localize.recipe_candidates import Candidate
    from localize.training_args import TrainingArguments

    def head(strength: float) -> TrainingArguments:
        # A large validation share, so users' heads are calibrated and the choice measures its correction.
        return TrainingArguments(method="head", method_options={}, train_scope="head", prior_max_epochs=5,
                                 head_prior_strength=strength, validation_fraction=0.4)

    stubborn = Candidate("stubborn-head", head(1e6), "held at the pooled head: a user in the minority is always wrong")
    loose = Candidate("loose-head", head(0.1), "learns each user")
    monkeypatch.setattr(recipe_candidates, "candidate_recipes", lambda stacked_priors_max_rows=0: [stubborn, loose])
    return stubborn, loose
