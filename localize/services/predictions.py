"""Predictions: per user, mixed rows of many users in one batched pass, and fan-out of one text to many users."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Task, User
from localize.engine import Prediction
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
    outputs = forward(runtime=runtime, rows=[(serving[(r.user, r.task)][0], r.text) for r in requests], merge=True)
    return [
        PredictionResult(user=r.user, task=r.task, text=r.text, label=out.label, probabilities=out.probabilities,
                         version=_answered(out, serving[(r.user, r.task)][0]), source=serving[(r.user, r.task)][1])
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
    outputs = forward(runtime=runtime, rows=[(row, text) for row, _ in rows])
    return [
        PredictionResult(user=user.name, task=task.name, text=text, label=out.label, probabilities=out.probabilities,
                         version=_answered(out, row), source="user")
        for (row, user), out in zip(rows, outputs)
    ]


def forward(
    *, runtime: Runtime, rows: Sequence[tuple[AdapterVersion, str]], merge: bool = False
) -> list[Prediction]:
    """Forward passes for ``(adapter version, text)`` rows: in this process, or on the Ray Serve replicas
    (``LOCALIZE_SERVING=ray``, docs/deploy.md). With ``merge``, concurrent requests share engine passes through
    the micro-batcher (``LOCALIZE_BATCH_WINDOW_MS=0``: each request runs alone)."""
    if runtime.settings.serving == "ray":
        from localize.distributed.serving import AdapterRef

        return runtime.remote_predictor.predict([(AdapterRef.from_row(row), text) for row, text in rows])
    # A version whose files are missing or corrupt falls back to the newest earlier good one (which says so).
    weights = {row.id: adapter_service.load_serving_weights(runtime=runtime, row=row) for row, _ in rows}
    loaded = [(weights[row.id], text) for row, text in rows]
    if merge and runtime.settings.batch_window_ms > 0:
        return runtime.batcher.predict(loaded)
    return runtime.engine.predict(loaded)


def _answered(output: Prediction, row: AdapterVersion) -> int:
    """The version that really answered: an earlier one when ``row``'s files could not be served."""
    return output.version if output.version is not None else row.version
