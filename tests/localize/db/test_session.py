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


@pytest.mark.parametrize("database_backend", ["sqlite", "postgresql"])
def test_json_columns_store_nan_and_infinity_as_null(runtime) -> None:
    """A metric of an empty split is NaN; PostgreSQL's json type would refuse it and fail the whole job."""
    from localize.db.models import Job, Task
    from localize.db.session import session_scope

    with session_scope(runtime.database) as session:
        task = Task(name="t", labels=["a", "b"])
        session.add(task)
        session.flush()
        job = Job(task_id=task.id, metrics={"val_loss": float("nan"), "nested": [float("inf"), 1.5]})
        session.add(job)
        session.commit()
        job_id = job.id
    with session_scope(runtime.database) as session:
        assert session.get(Job, job_id).metrics == {"val_loss": None, "nested": [None, 1.5]}


@pytest.mark.parametrize("database_backend", ["postgresql"])
def test_processes_starting_at_once_migrate_one_after_the_other(fresh_database) -> None:
    """Servers and workers on several machines start together and each runs `upgrade head`: all succeed."""
    import threading

    from sqlalchemy import inspect

    from localize.db.session import upgrade_database

    url = fresh_database()
    errors, barrier = [], threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            upgrade_database(url)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = make_engine(url)
    try:
        assert "adapter_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
