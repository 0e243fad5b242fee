"""Request and response models of the HTTP API, each with an example for the OpenAPI document.

The table families live in ``localize.db.models``; the ``*Public`` models here extend them with examples and
make every timestamp timezone-aware (SQLite hands back naive UTC datetimes)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from localize.api.validation import NonBlankText, SafeText, StoredName, StoredNonBlankText, StoredText
from localize.db import models
from localize.db.models import aware
from localize.validation import STRIPPED_TEXT_PATTERN

UtcDatetime = Annotated[datetime, AfterValidator(aware)]
OptionalUtcDatetime = Annotated[datetime | None, AfterValidator(aware)]


def _without_calibration_record(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version's record of its validation confidences serves abstention; callers see how many rows it holds."""
    if not metrics or "calibration" not in metrics:
        return metrics
    record = metrics["calibration"] or {}
    return {**{k: v for k, v in metrics.items() if k != "calibration"},
            "calibration_rows": len(record.get("confidence", []))}


PublicMetrics = Annotated[dict[str, Any], AfterValidator(_without_calibration_record)]

NOW = "2025-01-15T09:30:00Z"
TASK_LABELS = ["negative", "neutral", "positive"]
SPLITS = {"enum": ["train", "test", None]}  # stated only: a bad split is a row error, not a refused upload


def examples(*values: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


# -- health -------------------------------------------------------------------------------------------------------
class HealthPublic(BaseModel):
    model_config = examples({"status": "ok"})

    status: Literal["ok"] = "ok"


class ReadyPublic(BaseModel):
    model_config = examples(
        {"status": "ready", "database": "ok", "schema_revision": "0001", "base_model_loaded": False}
    )

    status: Literal["ready"] = "ready"
    database: Literal["ok"] = "ok"
    schema_revision: str | None = Field(description="The database's Alembic revision (the migration head).")
    base_model_loaded: bool = Field(
        description="Whether the serving engine, and with it the base model, is in memory; it loads on the first "
        "prediction."
    )
    worker: models.WorkerPublic | None = Field(
        None, description="The training worker `localize serve` supervises (null when it runs none): its process "
        "and heartbeat. The server is not ready while that worker is dead or its heartbeat is stale."
    )


# -- users --------------------------------------------------------------------------------------------------------
class UserCreate(models.UserCreate):
    model_config = examples({"name": "john"})


class UserPublic(models.UserPublic):
    model_config = examples({"id": 1, "name": "john", "created_at": NOW})

    created_at: UtcDatetime


class UsersPublic(models.UsersPublic):
    model_config = examples({"data": [{"id": 1, "name": "john", "created_at": NOW}], "count": 1})

    data: list[UserPublic]


class ApiKeyPublic(BaseModel):
    model_config = examples({"user": "john", "api_key": "lk_3q2Vd0fJ0m3pQx6J9yXcZ1a8b7c6d5e4f3g2h1i0jKk"})

    user: str
    api_key: str = Field(description="Shown once and stored only as a hash; any earlier key of the user stops working.")


# -- tasks --------------------------------------------------------------------------------------------------------
_TASK = {"id": 1, "name": "gold-sentiment", "labels": TASK_LABELS, "description": "Tweets about my positions.",
         "target_accuracy": 0.9, "created_at": NOW}


class TaskCreate(models.TaskCreate):
    model_config = examples(
        {"name": "gold-sentiment", "labels": TASK_LABELS, "description": "Tweets about my positions."}
    )

    # Enforced by the service (its messages name the rule); the schema states it.
    labels: list[SafeText] = Field(description="The task's label set: 2 or more distinct labels.", json_schema_extra={
        "minItems": 2, "uniqueItems": True,
        "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": STRIPPED_TEXT_PATTERN}})
    description: SafeText = Field(default="", max_length=2000)


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"target_accuracy": 0.95}]})

    description: SafeText | None = Field(default=None, max_length=2000)
    target_accuracy: float | None = Field(default=None, gt=0, le=1, description="Predictions abstain below the "
                                          "confidence at which the answering version's validation rows reach this "
                                          "accuracy.")


class TaskRecipePin(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"recipe": "pooled-head"},
                                                                              {"recipe": None}]})

    recipe: str | None = Field(description="A candidate recipe to pin (prior-head, pooled-head, prior-mlp, "
                               "prior-lora); null unpins, so the next whole-task training chooses again.")


class WholeTaskTraining(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"force_activation": False}]})

    force_activation: bool = Field(default=False, description="Activate each user's new version even when it "
                                   "was scored on no validation rows or scores clearly below the active one.")


class TaskPublic(models.TaskPublic):
    model_config = examples(_TASK)

    created_at: UtcDatetime


class TasksPublic(models.TasksPublic):
    model_config = examples({"data": [_TASK], "count": 1})

    data: list[TaskPublic]


class TaskDeletionPublic(BaseModel):
    model_config = examples({"task": "gold-sentiment", "users": 2, "labels": 600, "adapter_versions": 3, "jobs": 3,
                             "texts": 300, "files": ["var/adapters/task-1/user-1/v1", "var/adapters/task-1/user-1/v2",
                                       "var/adapters/task-1/user-2/v1"], "files_not_removed": []})

    task: str
    users: int = Field(description="Users who had labels in the task (the users and their keys stay).")
    labels: int = Field(description="Labels deleted, of every user.")
    adapter_versions: int = Field(description="Adapter versions deleted (users' and the task prior's).")
    jobs: int = Field(description="Training jobs deleted, with their events.")
    texts: int = Field(description="Texts deleted because no other task named them (labels or text pool).")
    files: list[str] = Field(description="Stored adapter versions whose files were deleted.")
    files_not_removed: list[str] = Field(description="Of those, the ones the store failed to remove (their rows are "
                                         "gone; the files are unused and may be removed by hand).")


# -- labels -------------------------------------------------------------------------------------------------------
class UserLabelIn(models.LabelIn):
    """One label row of a per-user upload; ``user`` may be left out (it is the path's user). Each row's text is
    checked on its own (a bad row is a row error), so these types only state the rule."""

    text: StoredNonBlankText = Field(description="The labelled text.")
    label: StoredText = Field(description="One of the task's labels.")
    item: StoredText | None = Field(default=None, max_length=256,
                                    description="Optional id of the text in your own data.")
    split: str | None = Field(default=None, description="Optional: train or test.", json_schema_extra=SPLITS)
    user: StoredName | None = Field(default=None, description="Optional; if given it must be the path's user.")


class LabelsUpload(BaseModel):
    model_config = examples(
        {
            "labels": [
                {"text": "gold soars 3% as the dollar slides", "label": "positive", "item": "t-17"},
                {"text": "Brent slips below $70", "label": "negative", "split": "test"},
            ]
        }
    )

    labels: list[UserLabelIn] = Field(
        description="The rows; a row's `line` in the report is its 1-based position in this list."
    )


class BulkLabelIn(models.LabelIn):
    text: StoredNonBlankText = Field(description="The labelled text.")
    label: StoredText = Field(description="One of the task's labels.")
    item: StoredText | None = Field(default=None, max_length=256,
                                    description="Optional id of the text in your own data.")
    split: str | None = Field(default=None, description="Optional: train or test.", json_schema_extra=SPLITS)
    user: StoredName = Field(description="Whose label this is; the user is created if new.")


class BulkLabelsUpload(BaseModel):
    model_config = examples(
        {
            "labels": [
                {"user": "john", "text": "gold soars 3% as the dollar slides", "label": "positive"},
                {"user": "jane", "text": "gold soars 3% as the dollar slides", "label": "negative"},
            ]
        }
    )

    labels: list[BulkLabelIn]


class LabelChangePublic(BaseModel):
    line: int
    user: str
    text: str
    old_label: str
    new_label: str


class RowErrorPublic(BaseModel):
    line: int = Field(description="1-based line of the file (CSV: the header is line 1), or position in `labels`.")
    message: str


class UploadReportPublic(BaseModel):
    model_config = examples(
        {
            "accepted": 2,
            "created": 1,
            "updated": [{"line": 2, "user": "john", "text": "Brent slips below $70", "old_label": "neutral",
                         "new_label": "negative"}],
            "unchanged": 0,
            "errors": [{"line": 3, "message": "label 'bullish' is not one of task 'gold-sentiment''s labels "
                                              "['negative', 'neutral', 'positive']"}],
        }
    )

    accepted: int = Field(description="Rows stored: created + updated + unchanged.")
    created: int
    updated: list[LabelChangePublic] = Field(description="Rows whose label changed, with the old and new label.")
    unchanged: int
    errors: list[RowErrorPublic] = Field(description="Rejected rows, by line; the other rows were stored.")


_LABEL = {"id": 7, "user": "john", "task": "gold-sentiment", "text": "gold soars 3% as the dollar slides",
          "label": "positive", "item": "t-17", "split": None, "updated_at": NOW}


class LabelPublic(models.LabelPublic):
    model_config = examples(_LABEL)

    updated_at: UtcDatetime


class LabelsPublic(models.LabelsPublic):
    model_config = examples({"data": [_LABEL], "count": 1})

    data: list[LabelPublic]


class DeletedPublic(BaseModel):
    model_config = examples({"deleted": 1})

    deleted: int = Field(description="How many were deleted.")


# -- jobs ---------------------------------------------------------------------------------------------------------
TRAINING_EXAMPLE = {"method": "head", "max_epochs": 20}

_JOB = {
    "id": 3, "task": "gold-sentiment", "user": "john", "recipe": "head + prior", "state": "succeeded", "progress": 1.0,
    "args": {"method": "head", "max_epochs": 20, "batch_size": 32},
    "metrics": {"val_accuracy": 0.93, "val_macro_f1": 0.92, "epochs": 12, "train_seconds": 1.4},
    "error": None, "adapter_version": 2, "activated": True, "attempts": 1,
    "created_at": NOW, "started_at": NOW, "finished_at": NOW,
    "events": [
        {"created_at": NOW, "level": "info",
         "message": "queued: train user 'john' with head + prior in task 'gold-sentiment'"},
        {"created_at": NOW, "level": "info", "message": "succeeded: version 2 (active)"},
    ],
}


class JobPublic(models.JobPublic):
    model_config = examples(_JOB)

    metrics: PublicMetrics
    created_at: UtcDatetime
    started_at: OptionalUtcDatetime
    finished_at: OptionalUtcDatetime


class JobsPublic(models.JobsPublic):
    model_config = examples({"data": [{**_JOB, "events": []}], "count": 1})

    data: list[JobPublic]


JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


# -- adapters -----------------------------------------------------------------------------------------------------
_ADAPTER = {
    "id": 4, "task": "gold-sentiment", "user": "john", "version": 2, "method": "head", "is_active": True,
    "metrics": {"val_accuracy": 0.93, "val_macro_f1": 0.92}, "training_args": {"method": "head", "max_epochs": 20},
    "n_labels": 300, "trainable_params": 1155, "nbytes": 5020, "created_at": NOW,
}


class AdapterVersionPublic(models.AdapterVersionPublic):
    model_config = examples(_ADAPTER)

    metrics: PublicMetrics
    created_at: UtcDatetime


class AdapterVersionsPublic(models.AdapterVersionsPublic):
    model_config = examples({"data": [{**_ADAPTER, "version": 1, "is_active": False}, _ADAPTER], "count": 2})

    data: list[AdapterVersionPublic]


# -- predictions --------------------------------------------------------------------------------------------------
_PROBABILITIES = {"negative": 0.02, "neutral": 0.05, "positive": 0.93}


class PredictRequest(BaseModel):
    model_config = examples({"texts": ["gold soars 3% as the dollar slides", "Brent slips below $70"]})

    texts: list[NonBlankText] = Field(description="Texts to classify with the path user's active adapter.")
    target_accuracy: float | None = Field(default=None, gt=0, le=1, description="Abstain below the confidence at "
                                          "which each answering version reaches this accuracy on its validation rows; "
                                          "default: the task's target_accuracy.")


class PredictionPublic(BaseModel):
    model_config = examples(
        {"text": "gold soars 3% as the dollar slides", "label": "positive", "probabilities": _PROBABILITIES,
         "version": 2, "source": "user"}
    )

    text: str
    label: str
    probabilities: dict[str, float]
    version: int = Field(description="The adapter version that answered.")
    source: Literal["user", "prior"] = Field(description="user: the user's own adapter; prior: the task prior.")
    abstain: bool = Field(default=False, description="true: the top label's confidence is below the threshold at "
                          "which this version's validation rows reach the target accuracy; treat the label as unsure.")
    threshold: float | None = Field(default=None, description="That confidence threshold; null when the version had "
                                    "no validation rows to set one (it never abstains).")


class PredictionRow(BaseModel):
    user: SafeText
    task: SafeText
    text: NonBlankText


class MixedPredictRequest(BaseModel):
    model_config = examples(
        {
            "rows": [
                {"user": "john", "task": "gold-sentiment", "text": "gold soars 3% as the dollar slides"},
                {"user": "jane", "task": "gold-sentiment", "text": "gold soars 3% as the dollar slides"},
            ]
        }
    )

    rows: list[PredictionRow] = Field(description="Rows of any users and tasks, answered in one batched pass.")
    target_accuracy: float | None = Field(default=None, gt=0, le=1, description="Abstain below the confidence at "
                                          "which each answering version reaches this accuracy on its validation rows; "
                                          "default: each row's task's target_accuracy.")


class UserPredictionPublic(PredictionPublic):
    model_config = examples(
        {"user": "john", "task": "gold-sentiment", "text": "gold soars 3% as the dollar slides", "label": "positive",
         "probabilities": _PROBABILITIES, "version": 2, "source": "user"}
    )

    user: str
    task: str


class FanoutRequest(BaseModel):
    model_config = examples({"text": "gold soars 3% as the dollar slides", "users": ["john", "jane"]},
                            {"text": "gold soars 3% as the dollar slides"})

    text: NonBlankText
    users: list[SafeText] | None = Field(
        default=None, description="Users to ask; default: every user with an active adapter in the task."
    )
    target_accuracy: float | None = Field(default=None, gt=0, le=1, description="Abstain below the confidence at "
                                          "which each answering version reaches this accuracy on its validation rows; "
                                          "default: the task's target_accuracy.")
