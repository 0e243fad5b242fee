"""Tasks (name plus label set) and users with their API keys."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text as sql
from sqlmodel import Session, select

from localize.db.models import User
from localize.errors import ConflictError, NotFoundError, ValidationError
from localize.db.session import is_sqlite
from localize.runtime import Runtime
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task, ensure_task, get_task, list_tasks
from localize.services.users import (
    KEY_PREFIX,
    authenticate,
    create_user,
    get_or_create_user,
    get_user,
    hash_key,
    issue_api_key,
    label_counts,
    list_users,
)

from .support import JOHN_LABELS, TEXTS, label_rows


# -- tasks --------------------------------------------------------------------------------------------------------
def test_create_get_and_list_tasks(session: Session) -> None:
    created = create_task(session=session, name="gold-sentiment", labels=[" negative", "neutral", "positive "],
                          description="how a tweet moves my book")
    create_task(session=session, name="alpha", labels=["a", "b"])

    assert created.id is not None and created.created_at is not None
    assert created.labels == ["negative", "neutral", "positive"]  # trimmed, order kept
    fetched = get_task(session=session, name="gold-sentiment")
    assert (fetched.id, fetched.labels, fetched.description) == (created.id, created.labels, "how a tweet moves my book")
    assert [task.name for task in list_tasks(session=session)] == ["alpha", "gold-sentiment"]


def test_duplicate_task_name_conflicts(session: Session) -> None:
    create_task(session=session, name="notes", labels=["a", "b"])
    with pytest.raises(ConflictError, match="task 'notes' already exists"):
        create_task(session=session, name="notes", labels=["c", "d"])
    assert get_task(session=session, name="notes").labels == ["a", "b"]


def test_unknown_task_is_not_found(session: Session) -> None:
    with pytest.raises(NotFoundError, match="task 'nope' does not exist"):
        get_task(session=session, name="nope")


def test_ensure_task_keeps_an_existing_label_set(session: Session) -> None:
    first = ensure_task(session=session, name="notes", labels=["a", "b"])
    again = ensure_task(session=session, name="notes", labels=["x", "y", "z"])
    assert again.id == first.id and again.labels == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "labels", "match"),
    [
        ("", ["a", "b"], r"task name ''"),
        ("has space", ["a", "b"], r"task name 'has space'"),
        ("-leading-dash", ["a", "b"], r"task name '-leading-dash'"),
        ("x" * 129, ["a", "b"], r"task name 'x{129}'"),
        ("t", [], r"at least 2 labels, got \[\]"),
        ("t", ["only"], r"at least 2 labels, got \['only'\]"),
        ("t", ["a", "a"], r"labels \['a', 'a'\] contain duplicates"),
        ("t", ["a", " a "], r"labels \['a', 'a'\] contain duplicates"),
        ("t", ["a", ""], r"labels \['a', ''\] must be non-empty strings"),
        ("t", ["a", "   "], r"labels \['a', '   '\] must be non-empty strings"),
        ("t", ["a", 3], r"labels \['a', 3\] must be non-empty strings"),
    ],
)
def test_bad_task_names_and_label_sets(session: Session, name: str, labels: list, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        create_task(session=session, name=name, labels=labels)
    assert list_tasks(session=session) == []


def test_a_label_over_128_characters_is_refused_by_name(session: Session) -> None:
    with pytest.raises(ValidationError, match=r"label 'b{129}' is 129 characters; labels may have at most 128"):
        create_task(session=session, name="t", labels=["a", "b" * 129])
    assert list_tasks(session=session) == []


def test_a_description_over_2000_characters_is_refused(session: Session) -> None:
    """PostgreSQL would refuse it with a database error; SQLite would store it silently."""
    with pytest.raises(ValidationError, match=r"task description is 2001 characters; descriptions may have at most"):
        create_task(session=session, name="t", labels=["a", "b"], description="d" * 2001)
    assert list_tasks(session=session) == []


# -- users --------------------------------------------------------------------------------------------------------
def test_create_get_and_duplicate_users(session: Session) -> None:
    user = create_user(session=session, name="john.doe@example")
    assert get_user(session=session, name="john.doe@example").id == user.id
    assert get_or_create_user(session=session, name="john.doe@example").id == user.id
    with pytest.raises(ConflictError, match="user 'john.doe@example' already exists"):
        create_user(session=session, name="john.doe@example")
    with pytest.raises(NotFoundError, match="user 'nobody' does not exist"):
        get_user(session=session, name="nobody")


@pytest.mark.parametrize("name", ["", "john doe", "_john", "x" * 129, "jöhn"])
def test_bad_user_names(session: Session, name: str) -> None:
    with pytest.raises(ValidationError, match=f"user name {name!r}"):
        create_user(session=session, name=name)
    assert session.exec(select(User)).all() == []


def test_list_users_of_a_task_with_label_counts(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:3], JOHN_LABELS[:3]))
    upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[:5], JOHN_LABELS[:5]))
    create_user(session=session, name="bob")  # no labels in the task

    everyone, total = list_users(session=session)
    in_task, count = list_users(session=session, task_id=task.id)
    page, _ = list_users(session=session, offset=1, limit=1)

    assert [u.name for u in everyone] == ["bob", "jane", "john"] and total == 3
    assert [u.name for u in in_task] == ["jane", "john"] and count == 2
    assert [u.name for u in page] == ["jane"]
    counts = label_counts(session=session, task_id=task.id)
    assert {u.name: counts[u.id] for u in in_task} == {"jane": 5, "john": 3}


# -- API keys -----------------------------------------------------------------------------------------------------
def _database_bytes(runtime: Runtime) -> bytes:
    path = Path(runtime.settings.resolved_database_url.removeprefix("sqlite:///"))
    return b"".join(file.read_bytes() for file in path.parent.glob(path.name + "*"))


def test_issue_api_key_stores_only_its_hash(runtime: Runtime, session: Session) -> None:
    user = create_user(session=session, name="john")

    key = issue_api_key(session=session, user=user)

    assert key.startswith(KEY_PREFIX) and len(key) > 30
    stored = session.exec(sql('SELECT api_key_hash FROM "user" WHERE name = \'john\'')).scalar_one()
    assert stored == hash_key(key) and stored != key
    row = session.exec(sql("SELECT * FROM \"user\" WHERE name = 'john'")).one()
    assert all(key not in str(value) for value in row)
    if is_sqlite(runtime.settings.resolved_database_url):
        assert key.encode() not in _database_bytes(runtime)  # neither in the file nor in its WAL


def test_authenticate_with_a_key(session: Session) -> None:
    john, jane = create_user(session=session, name="john"), create_user(session=session, name="jane")
    john_key, jane_key = issue_api_key(session=session, user=john), issue_api_key(session=session, user=jane)

    assert authenticate(session=session, key=john_key).name == "john"
    assert authenticate(session=session, key=jane_key).name == "jane"
    assert authenticate(session=session, key=john_key + "x") is None
    assert authenticate(session=session, key="") is None
    assert authenticate(session=session, key=None) is None


def test_a_new_key_revokes_the_old_one(session: Session) -> None:
    john = create_user(session=session, name="john")
    old = issue_api_key(session=session, user=john)
    new = issue_api_key(session=session, user=john)

    assert new != old
    assert authenticate(session=session, key=old) is None
    assert authenticate(session=session, key=new).id == john.id
