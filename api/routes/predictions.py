"""Predictions: one user's texts, mixed rows of many users in one batched pass, and one text fanned out to many
users. The single-user route, the hot one, is a coroutine that awaits the micro-batcher; the others are plain
``def``s whose forward passes run in the thread pool."""
from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from localize.api.deps import (
    AdminOnly,
    JsonBody,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
    TaskDep,
    check_visible,
)
from localize.api.errors import problem_responses
from localize.api.schemas import (
    FanoutRequest,
    MixedPredictRequest,
    PredictionPublic,
    PredictRequest,
    UserPredictionPublic,
)
from localize.api.serving_deps import ServingPathDep
from localize.api.validation import JsonRoute
from localize.services import predictions as prediction_service
from localize.services.predictions import PredictionRequest

PREDICTIONS = TypeAdapter(list[PredictionPublic])

router = APIRouter(route_class=JsonRoute, tags=["predictions"],
                   responses=problem_responses(401, 404, 413, 422, 503))


@router.post("/tasks/{task}/users/{user}/predict", response_model=list[PredictionPublic],
             responses=problem_responses(400, 415))
async def predict(path: ServingPathDep, body: PredictRequest) -> Response:
    """Classify texts with the user's active adapter (404 no-adapter before their first training)."""
    # The hot path: cached lookups on the event loop, the engine pass awaited, the answer serialized once.
    requests = [PredictionRequest(user=path.user.name, task=path.task.name, text=text) for text in body.texts]
    results = await prediction_service.predict_async(runtime=path.runtime, lookups=path.lookups, requests=requests,
                                                     target_accuracy=body.target_accuracy)
    return Response(PREDICTIONS.dump_json([PredictionPublic.model_validate(vars(result)) for result in results]),
                    media_type="application/json")


@router.post("/predict", response_model=list[UserPredictionPublic], responses=problem_responses(400),
             dependencies=[JsonBody])
def predict_mixed(body: MixedPredictRequest, principal: PrincipalDep, session: SessionDep,
                  runtime: RuntimeDep) -> list[UserPredictionPublic]:
    """Classify rows of many users and tasks in one batched pass; a user key may only name its own user."""
    for row in body.rows:
        check_visible(principal, row.user)
    requests = [PredictionRequest(user=row.user, task=row.task, text=row.text) for row in body.rows]
    results = prediction_service.predict(session=session, runtime=runtime, requests=requests,
                                         target_accuracy=body.target_accuracy)
    return [UserPredictionPublic.model_validate(vars(result)) for result in results]


@router.post("/tasks/{task}/fanout", response_model=list[UserPredictionPublic],
             responses=problem_responses(400, 403), dependencies=[AdminOnly, JsonBody])
def fanout(task: TaskDep, body: FanoutRequest, session: SessionDep,
           runtime: RuntimeDep) -> list[UserPredictionPublic]:
    """Classify one text for every user with an active adapter in the task, or for the named users (admin)."""
    results = prediction_service.fanout(session=session, runtime=runtime, task=task, text=body.text,
                                        user_names=body.users, target_accuracy=body.target_accuracy)
    return [UserPredictionPublic.model_validate(vars(result)) for result in results]
