"""Alembic owns the schema: head must equal the SQLModel tables, downgrade must undo it, and a SQLite file runs
in WAL mode with foreign keys enforced."""
from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import localize.db.models  # noqa: F401  (registers the tables)
from localize.db.models import Label
from localize.db.session import alembic_config, make_engine, session_scope, upgrade_database

TABLES = {"task", "text", "user", "label", "adapter_version", "job", "job_event"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'schema.db'}"


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
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
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


def test_sqlite_file_runs_in_wal_mode_with_foreign_keys(url: str) -> None:
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            with session_scope(engine) as session:
                session.add(Label(user_id=999, task_id=999, text_id=999, label="x"))
    finally:
        engine.dispose()
