"""Users and their API keys. Keys are random, shown once, and stored only as a SHA-256 hash."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import func
from sqlmodel import Session, select

from localize.db.models import Label, User
from localize.names import NAME_RULE, is_valid_name
from localize.errors import ConflictError, NotFoundError, ValidationError

KEY_PREFIX = "lk_"


def check_user_name(name: str) -> str:
    if not is_valid_name(name):
        raise ValidationError(f"user name {name!r} must be {NAME_RULE}")
    return name


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_user(*, session: Session, name: str) -> User:
    check_user_name(name)
    if find_user(session=session, name=name) is not None:
        raise ConflictError(f"user {name!r} already exists")
    user = User(name=name)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def find_user(*, session: Session, name: str) -> User | None:
    return session.exec(select(User).where(User.name == name)).first()


def get_user(*, session: Session, name: str) -> User:
    user = find_user(session=session, name=name)
    if user is None:
        raise NotFoundError(f"user {name!r} does not exist")
    return user


def get_or_create_user(*, session: Session, name: str) -> User:
    user = find_user(session=session, name=name)
    return user if user is not None else create_user(session=session, name=name)


def list_users(*, session: Session, task_id: int | None = None, offset: int = 0, limit: int = 100) -> tuple[list[User], int]:
    query = select(User)
    if task_id is not None:
        query = query.where(User.id.in_(select(Label.user_id).where(Label.task_id == task_id).distinct()))
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    users = list(session.exec(query.order_by(User.name).offset(offset).limit(limit)))
    return users, count


def label_counts(*, session: Session, task_id: int) -> dict[int, int]:
    rows = session.exec(
        select(Label.user_id, func.count()).where(Label.task_id == task_id).group_by(Label.user_id)
    ).all()
    return {user_id: count for user_id, count in rows}


def issue_api_key(*, session: Session, user: User) -> str:
    """A new key for ``user``; any earlier key stops working. The plain key is returned once, never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    user.api_key_hash = hash_key(key)
    session.add(user)
    session.commit()
    return key


def authenticate(*, session: Session, key: str | None) -> User | None:
    if not key:
        return None
    digest = hash_key(key)
    # The index lookup is on the SHA-256 of a 256-bit random key, so its timing reveals nothing usable about the
    # key; the final comparison is constant-time all the same.
    user = session.exec(select(User).where(User.api_key_hash == digest)).first()
    if user is None or not hmac.compare_digest(user.api_key_hash or "", digest):
        return None
    return user
