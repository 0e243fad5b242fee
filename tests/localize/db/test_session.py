"""Database URLs: a PostgreSQL URL without a driver uses psycopg 3 (the driver localize installs)."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from localize.db.session import driver_url, make_engine


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://u:p@db:5432/localize", "postgresql+psycopg://u:p@db:5432/localize"),
    ("postgres://u:p%40ss@db/localize", "postgresql+psycopg://u:p%40ss@db/localize"),
    ("postgresql+psycopg://u@db/localize", "postgresql+psycopg://u@db/localize"),
    ("postgresql+psycopg2://u@db/localize", "postgresql+psycopg2://u@db/localize"),
    ("sqlite:////var/localize.db", "sqlite:////var/localize.db"),
])
def test_driver_url(given: str, used: str) -> None:
    assert driver_url(given) == used


@pytest.mark.parametrize("database_backend", ["postgresql"])
def test_a_plain_postgresql_url_connects(fresh_database) -> None:
    url = fresh_database().replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_database()")).scalar() == engine.url.database
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()
