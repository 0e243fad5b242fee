"""Predictions: per user, mixed rows of many users in one batched pass, and fan-out of one text to many users."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from sqlmodel import Session, select

from localize import metrics, tracing
from localize.calibration import threshold_for
from localize.db.models import AdapterVersion, Task, User
from localize.engine import Prediction
from localize.errors import NoAdapterError, PayloadTooLargeError, ValidationError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services.lookups import CacheMiss, ServingLookups
from localize.services.tasks import get_task
from localize.services.users import get_user


@dataclass(frozen=True)
class PredictionRequest:
    user: str
    task: str
    text: str


@dataclass
class PredictionResult:
    user: str
    task: str
    text: str
    label: str
    probabilities: dict[str, float]
    version: int
    source: str  # "user": the user's own adapter; "prior": the task prior answered for a user without one
    abstain: bool = False  # the top label's confidence is below the threshold that reaches the target accuracy
    threshold: float | None = None  # that threshold; None: the version had no validation rows to set one


def check_texts(texts: Sequence[str], *, max_chars: int, max_rows: int) -> None:
    if len(texts) > max_rows:
        raise PayloadTooLargeError(f"{len(texts)} texts is over the limit of {max_rows} per request")
    if not texts:
        raise ValidationError("no texts to predict")
    problems = []
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            problems.append({"index": index, "message": "text is empty"})
        elif len(text) > max_chars:
            problems.append({"index": index, "message": f"text is {len(text)} characters, over the limit of {max_chars}"})
    if problems:
        raise ValidationError(
            "; ".join(f"text {p['index']}: {p['message']}" for p in problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
            errors=problems,
        )


def predict(
    *, session: Session, runtime: Runtime, requests: Sequence[PredictionRequest], allow_prior: bool | None = None,
    target_accuracy: float | None = None,
) -> list[PredictionResult]:
    """Answers every row with its own user's active adapter; all rows share batched forward passes. Each answer
    says whether it abstains: below the confidence at which the version's validation rows reach the target accuracy
    (``target_accuracy``, else the task's)."""
    settings = runtime.settings
    check_texts([r.text for r in requests], max_chars=settings.max_text_chars, max_rows=settings.max_batch_rows)
    allow_prior = settings.use_task_prior if allow_prior is None else allow_prior
    tasks: dict[str, Task] = {}
    users: dict[str, User] = {}
    serving: dict[tuple[str, str], tuple[AdapterVersion, str]] = {}
    for request in requests:
        pair = (request.user, request.task)
        if pair in serving:
            continue
        task = tasks.get(request.task) or tasks.setdefault(request.task, get_task(session=session, name=request.task))
        user = users.get(request.user) or users.setdefault(request.user, get_user(session=session, name=request.user))
        serving[pair] = adapter_service.serving_version(session=session, task=task, user=user, allow_prior=allow_prior)
    outputs = forward(runtime=runtime, rows=[(serving[(r.user, r.task)][0], r.text) for r in requests], merge=True)
    return _results(requests, outputs, tasks, serving, target_accuracy)


async def predict_async(
    *, runtime: Runtime, lookups: ServingLookups, requests: Sequence[PredictionRequest],
    allow_prior: bool | None = None, target_accuracy: float | None = None,
) -> list[PredictionResult]:
    """:func:`predict` for the event loop, with the database lookups cached (``lookups``, refreshed by the caller
    at the start of the request). When every answer is cached and every adapter resident, no thread and no
    database session is involved: the rows go straight to the micro-batcher and the coroutine awaits its pass.
    Anything else (a cache miss, an adapter to load, a store failure's fallback) is done in a worker thread."""
    settings = runtime.settings
    check_texts([r.text for r in requests], max_chars=settings.max_text_chars, max_rows=settings.max_batch_rows)
    allow_prior = settings.use_task_prior if allow_prior is None else allow_prior
    embedded = settings.serving != "ray"

    def plan(load: bool):  # noqa: ANN202
        tasks: dict[str, Task] = {}
        serving: dict[tuple[str, str], tuple[AdapterVersion, str]] = {}
        for request in requests:
            pair = (request.user, request.task)
            if pair not in serving:
                task = tasks.get(request.task) or tasks.setdefault(request.task, lookups.task(request.task, load=load))
                serving[pair] = lookups.serving(task, lookups.user(request.user, load=load), allow_prior=allow_prior,
                                                load=load)
        weights = {}
        for row, _ in serving.values() if embedded else ():
            if row.id not in weights:
                weights[row.id] = (adapter_service.load_serving_weights(runtime=runtime, row=row) if load
                                   else _resident(runtime, row))
        return tasks, serving, weights

    try:
        tasks, serving, weights = plan(load=False)
    except CacheMiss:
        tasks, serving, weights = await anyio.to_thread.run_sync(plan, True)
    rows = [(serving[(r.user, r.task)][0], r.text) for r in requests]
    if not embedded:
        outputs = await anyio.to_thread.run_sync(lambda: forward(runtime=runtime, rows=rows))
    else:
        loaded = [(weights[row.id], text) for row, text in rows]
        with tracing.span("engine.predict", rows=len(loaded)):
            if settings.batch_window_ms > 0:
                outputs = await runtime.batcher.predict_async(loaded)
            else:
                outputs = await anyio.to_thread.run_sync(runtime.engine.predict, loaded)
    return _results(requests, outputs, tasks, serving, target_accuracy)


def _resident(runtime: Runtime, row: AdapterVersion):  # noqa: ANN202
    weights = runtime.engine.resident(adapter_service.engine_key(row)) if row.load_error is None else None
    if weights is None:
        raise CacheMiss(row.id)
    return weights


def _results(requests: Sequence[PredictionRequest], outputs: Sequence[Prediction], tasks: dict[str, Task],
             serving: dict[tuple[str, str], tuple[AdapterVersion, str]],
             target_accuracy: float | None) -> list[PredictionResult]:
    metrics.count_predictions(Counter((r.task, serving[(r.user, r.task)][1]) for r in requests))
    return [
        PredictionResult(user=r.user, task=r.task, text=r.text, label=out.label, probabilities=out.probabilities,
                         version=_answered(out, serving[(r.user, r.task)][0]), source=serving[(r.user, r.task)][1],
                         **_abstention(out, serving[(r.user, r.task)][0], target_accuracy or tasks[r.task].target_accuracy))
        for r, out in zip(requests, outputs)
    ]


def fanout(
    *, session: Session, runtime: Runtime, task: Task, text: str, user_names: Sequence[str] | None = None,
    target_accuracy: float | None = None,
) -> list[PredictionResult]:
    """One text classified for many users at once: the named ones, or every user with an active adapter."""
    check_texts([text], max_chars=runtime.settings.max_text_chars, max_rows=1)
    query = select(AdapterVersion, User).join(User, User.id == AdapterVersion.user_id).where(
        AdapterVersion.task_id == task.id, AdapterVersion.is_active
    )
    if user_names is not None:
        query = query.where(User.name.in_(list(user_names)))
    rows = session.exec(query.order_by(User.name)).all()
    if user_names is not None:
        missing = sorted(set(user_names) - {user.name for _, user in rows})
        if missing:
            raise NoAdapterError(f"user(s) {missing} have no active adapter in task {task.name!r}")
    outputs = forward(runtime=runtime, rows=[(row, text) for row, _ in rows])
    metrics.count_predictions({(task.name, "user"): len(outputs)})
    return [
        PredictionResult(user=user.name, task=task.name, text=text, label=out.label, probabilities=out.probabilities,
                         version=_answered(out, row), source="user",
                         **_abstention(out, row, target_accuracy or task.target_accuracy))
        for (row, user), out in zip(rows, outputs)
    ]


def forward(
    *, runtime: Runtime, rows: Sequence[tuple[AdapterVersion, str]], merge: bool = False
) -> list[Prediction]:
    """Forward passes for ``(adapter version, text)`` rows: in this process, or on the Ray Serve replicas
    (``LOCALIZE_SERVING=ray``, docs/deploy.md). With ``merge``, concurrent requests share engine passes through
    the micro-batcher (``LOCALIZE_BATCH_WINDOW_MS=0``: each request runs alone)."""
    with tracing.span("engine.predict", rows=len(rows)):
        if runtime.settings.serving == "ray":
            from localize.distributed.predictor import AdapterRef

            return runtime.remote_predictor.predict([(AdapterRef.from_row(row), text) for row, text in rows])
        # A version whose files are missing or corrupt falls back to the newest earlier good one (which says so).
        weights = {row.id: adapter_service.load_serving_weights(runtime=runtime, row=row) for row, _ in rows}
        loaded = [(weights[row.id], text) for row, text in rows]
        if merge and runtime.settings.batch_window_ms > 0:
            return runtime.batcher.predict(loaded)
        return runtime.engine.predict(loaded)


def _abstention(output: Prediction, row: AdapterVersion, target_accuracy: float) -> dict[str, Any]:
    threshold = _threshold(row, target_accuracy)
    confidence = max(output.probabilities.values())
    return {"abstain": threshold is not None and confidence < threshold, "threshold": threshold}


def _threshold(row: AdapterVersion, target_accuracy: float) -> float | None:
    # A stored version's record never changes: its threshold is read once per target accuracy. The key holds the
    # creation time too, since a database may reuse the id of a deleted version.
    record = (row.metrics or {}).get("calibration")
    if row.id is None:
        return threshold_for(record, target_accuracy)
    key = (row.id, str(row.created_at), round(target_accuracy, 6))
    if key not in _THRESHOLDS:
        if len(_THRESHOLDS) >= 65536:
            _THRESHOLDS.clear()
        _THRESHOLDS[key] = threshold_for(record, target_accuracy)
    return _THRESHOLDS[key]


_THRESHOLDS: dict[tuple[int, str, float], float | None] = {}


def _answered(output: Prediction, row: AdapterVersion) -> int:
    """The version that really answered: an earlier one when ``row``'s files could not be served."""
    return output.version if output.version is not None else row.version
