"""Predictions: per user, mixed rows of many users in one batched pass, and fan-out of one text to many users."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Task, User
from localize.errors import NoAdapterError, PayloadTooLargeError, ValidationError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
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
    *, session: Session, runtime: Runtime, requests: Sequence[PredictionRequest], allow_prior: bool | None = None
) -> list[PredictionResult]:
    """Answers every row with its own user's active adapter; all rows share batched forward passes."""
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
    weights = {pair: adapter_service.load_serving_weights(runtime=runtime, row=row) for pair, (row, _) in serving.items()}
    outputs = runtime.engine.predict([(weights[(r.user, r.task)], r.text) for r in requests])
    return [
        PredictionResult(user=r.user, task=r.task, text=r.text, label=out.label, probabilities=out.probabilities,
                         version=weights[(r.user, r.task)].version, source=serving[(r.user, r.task)][1])
        for r, out in zip(requests, outputs)
    ]


def fanout(
    *, session: Session, runtime: Runtime, task: Task, text: str, user_names: Sequence[str] | None = None
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
    adapters = [(adapter_service.load_serving_weights(runtime=runtime, row=row), row, user) for row, user in rows]
    outputs = runtime.engine.predict([(weights, text) for weights, _, _ in adapters])
    return [
        PredictionResult(user=user.name, task=task.name, text=text, label=out.label, probabilities=out.probabilities,
                         version=weights.version, source="user")
        for (weights, _, user), out in zip(adapters, outputs)
    ]
