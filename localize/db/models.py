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
    target_accuracy: float = Field(default=0.9, gt=0, le=1, sa_column_kwargs={"server_default": "0.9"},
                                   description="Predictions abstain below the confidence at which the answering "
                                   "version's validation rows reach this accuracy; a request may override it.")


class TaskCreate(TaskBase):
    pass


_RECIPE_HELP = ("The recipe the task's users train with: the winner of whole-task training's choice (each "
                "candidate's validation figures and seconds), or one an admin pinned; null before either.")


class Task(TaskBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True, index=True)
    created_at: datetime = _timestamp()
    recipe: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class TaskPublic(TaskBase):
    id: int
    created_at: datetime
    recipe: dict[str, Any] | None = Field(default=None, description=_RECIPE_HELP)


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
    # Runs that ended because their worker died (killed, crashed, hung): past a limit the job fails, so a job
    # that kills its worker cannot take every worker down in turn. Graceful stops do not count.
    worker_deaths: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
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
    recipe: str = Field(default="", description="What the job runs: prior-head (the default recipe: a MAP head on "
                        "the task prior), its task prior, or an adapter method.")
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


class WorkerHeartbeat(SQLModel, table=True):
    """One row per training worker process: it beats while it lives (idle or training), so a supervisor and
    ``/ready`` can tell a live worker from a dead or hung one."""

    __tablename__ = "worker_heartbeat"

    id: str = Field(primary_key=True, max_length=128)
    host: str = Field(max_length=255)
    pid: int
    job_id: int | None = Field(default=None)  # the job it runs now; no foreign key: deleting jobs never waits on it
    started_at: datetime = _timestamp()
    heartbeat_at: datetime = _timestamp()
    stopped_at: datetime | None = _timestamp(nullable=True)


class WorkerPublic(SQLModel):
    id: str
    pid: int | None
    job_id: int | None
    heartbeat_at: datetime | None
    heartbeat_age_seconds: float | None
    alive: bool
    restarts: int = 0
    last_exit: str | None = None


# -- text pool, labelling loop and automatic retraining ------------------------------------------------------------
class PoolText(SQLModel, table=True):
    """A text an admin put in a task's pool, unlabelled, for its users to label (the web app's label page)."""

    __tablename__ = "pool_text"
    __table_args__ = (UniqueConstraint("task_id", "text_id", name="uq_pool_text_task_text"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", nullable=False, index=True)
    text_id: int = Field(foreign_key="text.id", nullable=False)
    item: str | None = Field(default=None, max_length=256)
    created_at: datetime = _timestamp()


class TextSkip(SQLModel, table=True):
    """A pool text a user skipped: the queue leaves it out until the skip is undone."""

    __tablename__ = "text_skip"
    __table_args__ = (UniqueConstraint("user_id", "task_id", "text_id", name="uq_text_skip_user_task_text"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", nullable=False, index=True)
    task_id: int = Field(foreign_key="task.id", nullable=False)
    text_id: int = Field(foreign_key="text.id", nullable=False)
    created_at: datetime = _timestamp()


class TaskRetraining(SQLModel, table=True):
    """A task's automatic retraining setting: a user's job is queued after this many new labels (0: never)."""

    __tablename__ = "task_retraining"

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    retrain_every: int = Field(default=20, nullable=False)
    updated_at: datetime = _timestamp()


# -- webhooks -----------------------------------------------------------------------------------------------------
WEBHOOK_EVENTS = ("job.succeeded", "job.failed", "adapter.activated", "labels.uploaded")


class WebhookDeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed


class WebhookBase(SQLModel):
    url: str = Field(max_length=2048, description="Where events are POSTed: an http:// or https:// URL.")
    events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENTS), sa_column=Column(JSON, nullable=False),
                              description=f"The events to send, of {list(WEBHOOK_EVENTS)}; default: all.")


class WebhookCreate(WebhookBase):
    secret: str = Field(min_length=16, max_length=256, description="Shared secret the receiver checks each "
                        "delivery's signature with; stored, never shown again.")


class Webhook(WebhookBase, table=True):
    """An admin's subscription of one URL to a task's events."""

    id: int | None = Field(default=None, primary_key=True)
    # Deleting the task deletes its webhooks, and a webhook its deliveries (ON DELETE CASCADE).
    task_id: int = Field(foreign_key="task.id", ondelete="CASCADE", nullable=False, index=True)
    # Kept as given: signing needs the secret itself, so it cannot be hashed like an API key.
    secret: str = Field(max_length=256)
    created_at: datetime = _timestamp()
    # Jobs that finished from this moment on are still checked for job events; it trails the sender's last scan
    # by a margin, so each scan reads only recent jobs yet misses none that committed late.
    job_events_from: datetime = _timestamp()


class WebhookPublic(WebhookBase):
    id: int
    task: str
    created_at: datetime


class WebhooksPublic(SQLModel):
    data: list[WebhookPublic]
    count: int


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook, and the log of sending it. Rows are written in the transaction that made the
    change (the worker's, a request's), and a background sender reads them: nobody waits on a receiver."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_key", name="uq_webhook_delivery_event"),
        Index("ix_webhook_delivery_due", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id", ondelete="CASCADE", nullable=False)
    event: str = Field(max_length=64)
    # What the event is about, unique per webhook, so an event is enqueued once however many senders look.
    event_key: str = Field(max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=WebhookDeliveryState.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = _timestamp()
    last_status: int | None = Field(default=None)
    last_error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))
    created_at: datetime = _timestamp()
    delivered_at: datetime | None = _timestamp(nullable=True)


class WebhookDeliveryPublic(SQLModel):
    id: int
    webhook_id: int
    event: str
    state: str = Field(description="pending (not yet delivered; retried with backoff), delivered, or failed (every "
                       "attempt failed).")
    attempts: int
    last_status: int | None = Field(description="The receiver's HTTP status on the last attempt, if it answered.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    payload: dict[str, Any] = Field(description="The JSON body sent.")
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    delivered_at: datetime | None


class WebhookDeliveriesPublic(SQLModel):
    data: list[WebhookDeliveryPublic]
    count: int
