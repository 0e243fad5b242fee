"""Why the user's model answered as it did: per-word occlusion attribution, with the task prior's answer."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from localize.api.deps import JsonBody, OwnerDep, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.validation import JsonRoute, SafeText
from localize.services import explain as explain_service

router = APIRouter(route_class=JsonRoute, tags=["predictions"], responses=problem_responses(401, 404, 413, 422, 503))

_PROBABILITIES = {"negative": 0.12, "positive": 0.88}


class ExplainRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "gold soars 3% as the dollar slides"}]})

    text: SafeText = Field(description="The text to classify and explain.")


class TokenWeightPublic(BaseModel):
    token: str
    start: int = Field(description="Character offset of the token in the text.")
    end: int
    weight: float = Field(description="How much the answer's probability falls when the token is removed; "
                          "negative: the token argued against the answer.")


class AnswerPublic(BaseModel):
    label: str
    probabilities: dict[str, float]
    version: int
    source: str = Field(description="user: the user's adapter; prior: the task prior.")
    abstain: bool = Field(default=False, description="The answer's confidence is below the threshold at which the "
                          "version's validation rows reach the task's target accuracy (as /predict reports it).")
    threshold: float | None = Field(default=None, description="That threshold; None without validation rows.")


class ExplanationPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "text": "gold soars 3%", "answer": {"label": "positive", "probabilities": _PROBABILITIES, "version": 2,
                                           "source": "user"},
        "tokens": [{"token": "gold", "start": 0, "end": 4, "weight": 0.05},
                   {"token": "soars", "start": 5, "end": 10, "weight": 0.41},
                   {"token": "3%", "start": 11, "end": 13, "weight": 0.02}],
        "prior": {"label": "positive", "probabilities": {"negative": 0.3, "positive": 0.7}, "version": 1,
                  "source": "prior"}}]})

    text: str
    answer: AnswerPublic
    tokens: list[TokenWeightPublic] = Field(description="Words (spans of words in a long text) in text order.")
    prior: AnswerPublic | None = Field(description="The task prior's (the crowd's) answer; None without a prior.")


@router.post("/tasks/{task}/users/{user}/explain", response_model=ExplanationPublic, responses=problem_responses(400),
             dependencies=[JsonBody])
def explain(task: TaskDep, owner: OwnerDep, body: ExplainRequest, session: SessionDep,
            runtime: RuntimeDep) -> ExplanationPublic:
    """Classify a text with the user's adapter and attribute the answer to its words (occlusion, in one batch)."""
    result = explain_service.explain(session=session, runtime=runtime, task=task, user=owner, text=body.text)
    return ExplanationPublic(
        text=result.text, answer=AnswerPublic.model_validate(vars(result.answer)),
        tokens=[TokenWeightPublic.model_validate(vars(token)) for token in result.tokens],
        prior=None if result.prior is None else AnswerPublic.model_validate(vars(result.prior)),
    )
