"""A user's labelling queue (active learning) and their answers to it, one text at a time."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from localize.api.deps import JsonBody, OwnerDep, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import JobPublic, PredictionPublic
from localize.api.validation import JsonRoute
from localize.errors import ValidationError
from localize.services import jobs as job_service
from localize.services import labelling
from localize.services import queue as queue_service

router = APIRouter(route_class=JsonRoute, prefix="/tasks/{task}/users/{user}/queue", tags=["labelling queue"],
                   responses=problem_responses(401, 404, 422))


class QueueEntryPublic(BaseModel):
    text_id: int
    text: str
    source: str = Field(description="pool: uploaded by an admin; crowd: another user labelled it.")
    reason: str = Field(description="active: scored by the user's model; prior: by the task prior's uncertainty; "
                        "random: one of the queue's random picks.")
    score: float
    uncertainty: float | None = Field(description="1 - (top probability - second), of the model that scored it.")
    disagreement: float | None = Field(description="Total variation distance between the user's model and the prior.")


class QueuePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "data": [{"text_id": 7, "text": "Brent slips below $70", "source": "pool", "reason": "active", "score": 0.81,
                  "uncertainty": 0.93, "disagreement": 0.69}],
        "count": 1, "strategy": "active", "version": 2, "prior_version": 1, "candidates": 140}]})

    data: list[QueueEntryPublic]
    count: int
    strategy: str = Field(description="active (the user's adapter), prior (no adapter yet) or random (no model).")
    version: int | None = Field(description="The user's adapter version that scored the queue.")
    prior_version: int | None
    candidates: int = Field(description="Pool texts the user has neither labelled nor skipped.")


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text_id": 7, "label": "negative"},
                                                                                {"text_id": 8, "skip": True}]})

    text_id: int = Field(ge=1, description="A text of the queue (of the task's pool).")
    label: str | None = Field(default=None, description="One of the task's labels; leave out with skip.")
    skip: bool = Field(default=False, description="Skip the text: it leaves the queue.")


class AnswerPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "text_id": 7, "label": "negative", "skipped": False,
        "guess": {"text": "Brent slips below $70", "label": "positive", "probabilities": {"negative": 0.4,
                  "positive": 0.6}, "version": 2, "source": "user"}, "job": None}]})

    text_id: int
    label: str | None
    skipped: bool
    guess: PredictionPublic | None = Field(description="What the user's model (or the task prior) said before the "
                                           "answer was stored; shown only after answering, so it cannot bias it.")
    job: JobPublic | None = Field(description="The retraining job this answer queued (after the task's "
                                  "retrain_every new labels), if any.")


@router.get("", response_model=QueuePublic)
def get_queue(
    task: TaskDep,
    owner: OwnerDep,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=queue_service.MAX_LIMIT, description="Texts to return.")] = 10,
    uncertainty_weight: Annotated[float, Query(ge=0, le=1e6)] = queue_service.DEFAULT_UNCERTAINTY_WEIGHT,
    disagreement_weight: Annotated[float, Query(ge=0, le=1e6)] = queue_service.DEFAULT_DISAGREEMENT_WEIGHT,
    random_share: Annotated[float, Query(ge=0, le=1)] = queue_service.DEFAULT_RANDOM_SHARE,
) -> QueuePublic:
    """The next texts for the user to label: the most informative for their own model first, with random picks."""
    queue = queue_service.build_queue(session=session, runtime=runtime, task=task, user=owner, limit=limit,
                                      uncertainty_weight=uncertainty_weight, disagreement_weight=disagreement_weight,
                                      random_share=random_share)
    return QueuePublic(
        data=[QueueEntryPublic(text_id=e.text_id, text=e.text, source=e.source, reason=e.pick.reason,
                               score=e.pick.score, uncertainty=e.pick.uncertainty, disagreement=e.pick.disagreement)
              for e in queue.entries],
        count=len(queue.entries), strategy=queue.strategy, version=queue.version, prior_version=queue.prior_version,
        candidates=queue.candidates,
    )


@router.post("/answers", response_model=AnswerPublic, responses=problem_responses(400, 415), dependencies=[JsonBody])
def answer(task: TaskDep, owner: OwnerDep, body: AnswerIn, session: SessionDep, runtime: RuntimeDep) -> AnswerPublic:
    """Label (or skip) one text of the queue; after the task's retrain_every new labels a job is queued."""
    if body.skip == (body.label is not None):
        raise ValidationError("send either a label or skip=true, not both and not neither")
    if body.skip:
        labelling.skip(session=session, task=task, user=owner, text_id=body.text_id)
        return AnswerPublic(text_id=body.text_id, label=None, skipped=True, guess=None, job=None)
    result = labelling.answer(session=session, runtime=runtime, task=task, user=owner, text_id=body.text_id,
                              label=body.label)
    return AnswerPublic(
        text_id=result.text_id, label=result.label, skipped=False,
        guess=None if result.guess is None else PredictionPublic.model_validate(vars(result.guess)),
        job=None if result.job is None else job_service.job_public(session=session, job=result.job),
    )
