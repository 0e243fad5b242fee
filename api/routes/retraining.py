"""Automatic retraining: a task's setting (admin) and where a user stands against it."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from localize.api.deps import AdminOnly, JsonBody, OwnerDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.validation import JsonRoute
from localize.services import retraining

router = APIRouter(route_class=JsonRoute, tags=["retraining"], responses=problem_responses(401, 404, 422))


class RetrainingSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"retrain_every": 20}]})

    retrain_every: StrictInt = Field(ge=0, le=retraining.MAX_RETRAIN_EVERY,
                                     description="Queue a user's job after this many new labels; 0 turns it off.")


class RetrainingStatus(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"retrain_every": 20, "new_labels": 13, "labels_to_go": 7, "pending_job": None}]})

    retrain_every: int
    new_labels: int = Field(description="The user's labels changed since their latest job was queued.")
    labels_to_go: int | None = Field(description="New labels until a job is queued; None when retraining is off.")
    pending_job: int | None = Field(description="The user's queued or running job, if any.")


@router.get("/tasks/{task}/retraining", response_model=RetrainingSetting)
def get_setting(task: TaskDep, session: SessionDep) -> RetrainingSetting:
    """The task's automatic retraining setting (default: after 20 new labels)."""
    return RetrainingSetting(retrain_every=retraining.retrain_every(session=session, task=task))


@router.put("/tasks/{task}/retraining", response_model=RetrainingSetting, responses=problem_responses(400, 403, 415),
            dependencies=[AdminOnly, JsonBody])
def set_setting(task: TaskDep, body: RetrainingSetting, session: SessionDep) -> RetrainingSetting:
    """Set after how many new labels a user's job is queued by itself (admin; 0 turns it off)."""
    every = retraining.set_retrain_every(session=session, task=task, every=body.retrain_every)
    return RetrainingSetting(retrain_every=every)


@router.get("/tasks/{task}/users/{user}/retraining", response_model=RetrainingStatus)
def get_status(task: TaskDep, owner: OwnerDep, session: SessionDep) -> RetrainingStatus:
    """How many new labels the user has given and how many more queue their next job."""
    state = retraining.status(session=session, task=task, user=owner)
    pending = state["pending_job"]
    return RetrainingStatus(retrain_every=state["retrain_every"], new_labels=state["new_labels"],
                            labels_to_go=state["labels_to_go"], pending_job=None if pending is None else pending.id)
