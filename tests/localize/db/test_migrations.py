"""Alembic owns the schema: on SQLite and on PostgreSQL, head must equal the SQLModel tables and downgrade must
undo it; a SQLite file runs in WAL mode with foreign keys enforced, and both databases enforce foreign keys."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import localize.db.models  # noqa: F401  (registers the tables)
from localize.db.models import Label
from localize.db.session import alembic_config, make_engine, session_scope, upgrade_database

TABLES = {"task", "text", "user", "label", "adapter_version", "job", "job_event",
          "pool_text", "text_skip", "task_retraining", "worker_heartbeat", "webhook", "webhook_delivery"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request) -> str:
    return request.param


@pytest.fixture
def url(tmp_path: Path, fresh_database) -> str:
    """An empty database of the test's backend."""
    return fresh_database() or f"sqlite:///{tmp_path / 'schema.db'}"


def _diff(engine) -> list:  # noqa: ANN001
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, SQLModel.metadata)


def test_head_matches_the_models_exactly(url: str) -> None:
    upgrade_database(url)
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_an_empty_database_differs_from_the_models(url: str) -> None:
    """The comparison itself can see a difference (so an empty diff above means something)."""
    engine = make_engine(url)
    try:
        added = {entry[1].name for entry in _diff(engine) if entry[0] == "add_table"}
        assert added == TABLES
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade_again(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
        assert _diff(engine) == []
        with engine.connect() as connection:
            head = ScriptDirectory.from_config(config).get_current_head()
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(url: str) -> None:
    upgrade_database(url)
    upgrade_database(url)
    engine = make_engine(url)
    try:
        assert _diff(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_backend", ["sqlite"])
def test_sqlite_file_runs_in_wal_mode(url: str) -> None:
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(url: str) -> None:
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with pytest.raises(IntegrityError, match="(?i)foreign key"):
            with session_scope(engine) as session:
                session.add(Label(user_id=999, task_id=999, text_id=999, label="x"))
    finally:
        engine.dispose()


def test_0002_adds_the_load_error_columns_and_keeps_stored_rows(url: str) -> None:
    """An existing database at 0001 upgrades in place: adapter versions keep their file hashes."""
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO task (id, name, labels, description, created_at) "
                                    "VALUES (1, 'notes', '[\"a\", \"b\"]', '', CURRENT_TIMESTAMP)"))
            connection.execute(text(
                "INSERT INTO adapter_version (task_id, version, method, is_active, store_key, files, metrics, "
                "training_args, n_labels, trainable_params, nbytes, created_at) VALUES (1, 1, 'head', true, "
                "'task-1/prior', '{\"head.safetensors\": \"ab\"}', '{}', '{}', 3, 10, 100, CURRENT_TIMESTAMP)"))
        command.upgrade(config, "head")
        columns = {column["name"] for column in inspect(engine).get_columns("adapter_version")}
        assert {"load_error", "load_error_at"} <= columns
        with engine.connect() as connection:
            files, load_error = connection.execute(text("SELECT files, load_error FROM adapter_version")).one()
        assert (files if isinstance(files, dict) else json.loads(files)) == {"head.safetensors": "ab"}
        assert load_error is None
        command.downgrade(config, "0001")
        assert "load_error" not in {column["name"] for column in inspect(engine).get_columns("adapter_version")}
    finally:
        engine.dispose()
