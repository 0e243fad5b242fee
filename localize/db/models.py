"""Tables and their API model families (``XBase / XCreate / X(table=True) / XPublic / XsPublic``).

Timestamps are timezone-aware UTC. Alembic (``migrations/``) owns the schema; nothing calls ``create_all``
outside tests of the migrations themselves.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text as SAText, UniqueConstraint
from sqlmodel import Field, SQLModel

from localize.names import NAME_PATTERN



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _timestamp(nullable: bool = False, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=DateTime(timezone=True), nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), nullable=False, index=index)


# -- tasks --------------------------------------------------------------------------------------------------------
class TaskBase(SQLModel):
    name: str = Field(max_length=128, schema_extra={"pattern": NAME_PATTERN}, description="Unique task name, e.g. gold-sentiment.")
    labels: list[str] = Field(sa_column=Column(JSON, nullable=False), description="The task's label set.")
    description: str = Field(default="", max_length=2000)


class TaskCreate(TaskBase):
    pass


class Task(TaskBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True, index=True)
    created_at: datetime = _timestamp()


class TaskPublic(TaskBase):
    id: int
    created_at: datetime


class TasksPublic(SQLModel):
    data: list[TaskPublic]
    count: int


# -- users --------------------------------------------------------------------------------------------------------
class UserBase(SQLModel):
    name: str = Field(max_length=128, schema_extra={"pattern": NAME_PATTERN}, description="Unique user name.")


class UserCreate(UserBase):
    pass


class User(UserBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True, index=True)
    api_key_hash: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = _timestamp()


class UserPublic(UserBase):
    id: int
    created_at: datetime


class UsersPublic(SQLModel):
    data: list[UserPublic]
    count: int


# -- texts and labels ---------------------------------------------------------------------------------------------
class Text(SQLModel, table=True):
    """A text is stored once, keyed by its content hash, and shared by every user who labels it."""

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True, index=True)
    body: str = Field(sa_column=Column(SAText, nullable=False))
    created_at: datetime = _timestamp()


class Label(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("user_id", "task_id", "text_id", name="uq_label_user_task_text"),
        Index("ix_label_task_user", "task_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", nullable=False)
    task_id: int = Field(foreign_key="task.id", nullable=False)
    text_id: int = Field(foreign_key="text.id", nullable=False, index=True)
    label: str = Field(max_length=128)
    item: str | None = Field(default=None, max_length=256)
    split: str | None = Field(default=None, max_length=16)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class LabelIn(SQLModel):
    text: str = Field(description="The labelled text.")
    label: str = Field(description="One of the task's labels.")
    item: str | None = Field(default=None, max_length=256, description="Optional id of the text in your own data.")
    split: str | None = Field(default=None, description="Optional: train or test.")


class LabelPublic(SQLModel):
    id: int
    user: str
    task: str
    text: str
    label: str
    item: str | None
    split: str | None
    updated_at: datetime


class LabelsPublic(SQLModel):
    data: list[LabelPublic]
    count: int


# -- adapters -----------------------------------------------------------------------------------------------------
class AdapterVersion(SQLModel, table=True):
    """One trained adapter of a (user, task); ``user_id`` is null for the task prior."""

    __tablename__ = "adapter_version"
    __table_args__ = (
        UniqueConstraint("task_id", "user_id", "version", name="uq_adapter_task_user_version"),
        Index("ix_adapter_task_user", "task_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", nullable=False)
    user_id: int | None = Field(default=None, foreign_key="user.id", nullable=True)
    version: int = Field(nullable=False)
    method: str = Field(max_length=64)
    is_active: bool = Field(default=False, nullable=False)
    store_key: str = Field(max_length=512)
    # sha256 of every stored file (the manifest included), checked on each load.
    files: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    training_args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    n_labels: int = Field(default=0)
    labels_updated_at: datetime | None = _timestamp(nullable=True)
    trainable_params: int = Field(default=0)
    nbytes: int = Field(default=0)
    created_at: datetime = _timestamp()
    # Set when loading this version failed (a missing or corrupt file): serving skips it for the newest earlier
    # good version until it is activated again, which checks its files first.
    load_error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))
    load_error_at: datetime | None = _timestamp(nullable=True)
    # The task prior version whose encoding this version's head reads (None: the frozen base).
    encoder_version_id: int | None = Field(default=None, foreign_key="adapter_version.id", nullable=True, index=True)


class AdapterVersionPublic(SQLModel):
    id: int
    task: str
    user: str | None
    version: int
    method: str
    is_active: bool
    metrics: dict[str, Any]
    training_args: dict[str, Any]
    n_labels: int
    trainable_params: int
    nbytes: int
    created_at: datetime
    load_error: str | None = Field(default=None, description="Why this version could not be loaded when it last "
                                   "failed (a missing or corrupt file); earlier good versions serve meanwhile.")
    load_error_at: datetime | None = None
    prior_version: int | None = Field(default=None, description="The task prior version whose encoding this head "
                                      "reads (the default recipe); None when the version is self-contained.")


class AdapterVersionsPublic(SQLModel):
    data: list[AdapterVersionPublic]
    count: int


# -- jobs ---------------------------------------------------------------------------------------------------------
class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class Job(SQLModel, table=True):
    __table_args__ = (Index("ix_job_state_id", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", nullable=False)
    user_id: int | None = Field(default=None, foreign_key="user.id", nullable=True, index=True)
    state: str = Field(default=JobState.QUEUED, max_length=16)
    progress: float = Field(default=0.0)
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))
    adapter_version_id: int | None = Field(default=None, foreign_key="adapter_version.id", nullable=True)
    activated: bool = Field(default=False)
    worker_id: str | None = Field(default=None, max_length=128)
    attempts: int = Field(default=0)
    cancel_requested: bool = Field(default=False)
    heartbeat_at: datetime | None = _timestamp(nullable=True)
    created_at: datetime = _timestamp()
    started_at: datetime | None = _timestamp(nullable=True)
    finished_at: datetime | None = _timestamp(nullable=True)


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_event"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", nullable=False, index=True)
    created_at: datetime = _timestamp()
    level: str = Field(default="info", max_length=16)
    message: str = Field(sa_column=Column(SAText, nullable=False))


class JobEventPublic(SQLModel):
    created_at: datetime
    level: str
    message: str


class JobPublic(SQLModel):
    id: int
    task: str
    user: str | None
    state: str
    progress: float
    args: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    adapter_version: int | None
    activated: bool
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: list[JobEventPublic] = []


class JobsPublic(SQLModel):
    data: list[JobPublic]
    count: int
