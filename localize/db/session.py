"""Database engines and sessions. SQLite (the embedded default) runs in WAL mode with a busy timeout, so the
API, a worker and the CLI can share one file safely; any other URL (PostgreSQL) is used as given."""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from localize.db import guards  # noqa: F401  (registers the flush guard on every session)
from localize.private_files import private_file, private_folder

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def driver_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs name no driver (SQLAlchemy would pick psycopg2, which is not
    installed): they use psycopg 3, localize's PostgreSQL driver. Other URLs are returned as given."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def _finite(value):  # noqa: ANN001, ANN202
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def dumps_json(value) -> str:  # noqa: ANN001
    """JSON columns store NaN and infinities (a metric of an empty split) as null: PostgreSQL's json type refuses
    them, and so do strict JSON readers of the API."""
    return json.dumps(_finite(value), allow_nan=False)


def make_engine(url: str) -> Engine:
    url = driver_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            # Labels and key hashes: the file (and SQLite's -wal and -shm beside it, which take its mode) and a
            # folder made for it are readable by their owner only.
            private_folder(Path(database).parent)
            private_file(database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, json_serializer=dumps_json)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=dumps_json)


@lru_cache
def get_engine(url: str) -> Engine:
    return make_engine(url)


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_path()))
    config.set_main_option("sqlalchemy.url", driver_url(url).replace("%", "%%"))
    return config


def _migrations_path() -> Path:
    import localize.migrations

    return Path(localize.migrations.__file__).resolve().parent


# Any fixed number: the key of the PostgreSQL advisory lock that serializes migrations.
_MIGRATION_LOCK = 0x6C6F63616C697A65


def schema_is_current(engine: Engine) -> bool:
    """Whether the database already stands at the single head revision, read from the migration files' text
    without importing Alembic (a command that only reads the database then starts in a fraction of a second).
    Any doubt (no version table, several heads, an unreadable file) answers False: the caller then upgrades."""
    import re

    revisions: dict[str, set[str]] = {}
    for path in (_migrations_path() / "versions").glob("*.py"):
        source = path.read_text()
        revision = re.search(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", source, re.M)
        down = re.search(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", source, re.M)
        if revision is None or down is None:
            if path.name != "__init__.py":
                return False
            continue
        revisions[revision.group(1)] = set(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    parents = set().union(*revisions.values()) if revisions else set()
    heads = set(revisions) - parents
    if len(heads) != 1:
        return False
    try:
        with engine.connect() as connection:
            current = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    except Exception:  # noqa: BLE001 - no version table yet (a new database) or not reachable: upgrade decides
        return False
    return current == list(heads)


def upgrade_database(url: str, revision: str = "head") -> None:
    """Brings the schema to ``revision``; Alembic alone creates and changes tables.

    On PostgreSQL the upgrade holds an advisory lock, so servers and workers starting at once on several machines
    migrate one after the other instead of racing to create the same tables (SQLite serializes writers itself)."""
    from alembic import command

    config = alembic_config(url)
    if is_sqlite(url):
        command.upgrade(config, revision)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                connection.commit()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
