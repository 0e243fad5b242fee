"""Every operation of the client, written once as a generator of :class:`Call` and :class:`Sleep` steps (see
``_core``). Responses are parsed into the API's own response models."""
from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from localize.api.schemas import (
    AdapterVersionPublic,
    AdapterVersionsPublic,
    ApiKeyPublic,
    DeletedPublic,
    JobPublic,
    JobsPublic,
    LabelsPublic,
    PredictionPublic,
    RowErrorPublic,
    TaskPublic,
    TasksPublic,
    UploadReportPublic,
    UserPredictionPublic,
    UserPublic,
    UsersPublic,
)
from localize.api.webhook_schemas import (
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookPublic,
    WebhooksPublic,
)
from localize.client._core import Call, Operation, Sleep
from localize.client.errors import JobFailedError, LabelFileError, PayloadTooLargeError, ValidationError, WaitTimeoutError

FINISHED = ("succeeded", "failed", "cancelled")
DEFAULT_CHUNK_ROWS = 1000  # the server's default row limit per request (LOCALIZE_MAX_BATCH_ROWS)
LABEL_FIELDS = ("text", "label", "item", "split")
_ROW_LIMIT = re.compile(r"over the limit of (\d+) rows")

LabelSource = str | PathLike | Iterable[Any]
ProgressCallback = Callable[[JobPublic], None]


def segment(name: str | int) -> str:
    """A name as one path segment: a name with '/' or '?' can never address another route."""
    return quote(str(name), safe="")


def _user_path(task: str, user: str) -> str:
    return f"/tasks/{segment(task)}/users/{segment(user)}"


# -- tasks and users ----------------------------------------------------------------------------------------------
def create_task(name: str, labels: list[str], description: str) -> Operation[TaskPublic]:
    return TaskPublic.model_validate((yield Call("POST", "/tasks", json={"name": name, "labels": list(labels),
                                                                         "description": description})))


def list_tasks() -> Operation[TasksPublic]:
    return TasksPublic.model_validate((yield Call("GET", "/tasks")))


def get_task(name: str) -> Operation[TaskPublic]:
    return TaskPublic.model_validate((yield Call("GET", f"/tasks/{segment(name)}")))


def create_user(name: str) -> Operation[UserPublic]:
    return UserPublic.model_validate((yield Call("POST", "/users", json={"name": name})))


def list_users(task: str | None, offset: int, limit: int) -> Operation[UsersPublic]:
    return UsersPublic.model_validate((yield Call("GET", "/users", params={"task": task, "offset": offset,
                                                                            "limit": limit})))


def issue_key(name: str) -> Operation[ApiKeyPublic]:
    return ApiKeyPublic.model_validate((yield Call("POST", f"/users/{segment(name)}/keys")))


# -- labels -------------------------------------------------------------------------------------------------------
def label_records(source: LabelSource, *, bulk: bool) -> Iterable[tuple[int, dict[str, Any] | str]]:
    """``(line, row)`` pairs from a JSONL / CSV file (its own line numbers; a CSV header is line 1) or from an
    iterable of mappings, pydantic models or ``(text, label)`` pairs (1-based positions); a row that cannot be read
    is its error message instead."""
    if isinstance(source, (str, PathLike)):
        return _file_records(Path(source), bulk=bulk)
    if isinstance(source, (bytes, Mapping)):
        raise TypeError("labels must be a file path or an iterable of rows, got "
                        f"{type(source).__name__}; wrap a single row in a list")
    return ((line, _row(value)) for line, value in enumerate(source, start=1))


def _file_records(path: Path, *, bulk: bool) -> list[tuple[int, dict[str, Any] | str]]:
    from localize.errors import ValidationError as FileProblem
    from localize.labels_io import detect_format, read_records

    try:
        data = path.read_bytes()
    except OSError as error:
        raise LabelFileError(f"label file {str(path)!r} cannot be read: {error}") from error
    required = ("user", "text", "label") if bulk else ("text", "label")
    try:
        records = read_records(data, detect_format(path.name, None, data[:4096]), required=required)
    except FileProblem as error:
        raise LabelFileError(f"label file {str(path)!r}: {error}") from None
    return [(line, _row(record) if isinstance(record, dict) else record) for line, record in records]


def _row(value: Any) -> dict[str, Any] | str:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    elif isinstance(value, tuple) and len(value) == 2:
        value = {"text": value[0], "label": value[1]}
    if not isinstance(value, Mapping):
        return f"expected a mapping with 'text' and 'label' (or a (text, label) pair), got {type(value).__name__}"
    row = {name: value[name] for name in ("user", *LABEL_FIELDS) if value.get(name) is not None}
    for name in ("item", "split"):  # an empty CSV cell means "absent"
        if isinstance(row.get(name), str) and not row[name].strip():
            del row[name]
    return row


def upload_labels(path: str, source: LabelSource, *, bulk: bool, chunk_rows: int) -> Operation[UploadReportPublic]:
    """Sends the rows in chunks of at most ``chunk_rows`` (halved while the server says a chunk is too large) and
    merges the reports; row errors are collected, each with the line of its row in ``source``, never raised."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    report = UploadReportPublic(accepted=0, created=0, updated=[], unchanged=0, errors=[])
    records = iter(label_records(source, bulk=bulk))
    pending: deque[tuple[int, dict[str, Any]]] = deque()
    size = chunk_rows
    while True:
        while len(pending) < size:
            try:
                line, record = next(records)
            except StopIteration:
                break
            if isinstance(record, str):
                report.errors.append(RowErrorPublic(line=line, message=record))
            else:
                pending.append((line, record))
        if not pending:
            break
        batch = [pending.popleft() for _ in range(min(size, len(pending)))]
        try:
            body = yield Call("POST", path, json={"labels": [record for _, record in batch]})
        except PayloadTooLargeError as error:
            if len(batch) == 1:
                report.errors.append(RowErrorPublic(line=batch[0][0], message=f"row refused by the server: {error.detail}"))
                continue
            limit = _ROW_LIMIT.search(error.detail)  # the server names its limit; else halve until it fits
            size = max(1, min(int(limit.group(1)) if limit else len(batch) // 2, len(batch) - 1))
            pending.extendleft(reversed(batch))
            continue
        except ValidationError as error:
            # No row of this chunk was stored: either every row was a row error (``line``), or the request itself
            # was refused for some rows' fields (``loc``: body.labels.<index>...), whose rows are dropped and the rest
            # sent again.
            lines = [_error_line(problem, batch) for problem in error.errors]
            if not error.errors or None in lines:
                raise
            report.errors.extend(RowErrorPublic(line=line, message=str(problem.get("message", "")))
                                 for line, problem in zip(lines, error.errors))
            if all("loc" in problem for problem in error.errors):
                refused = set(lines)
                pending.extendleft(reversed([(line, record) for line, record in batch if line not in refused]))
            continue
        _merge(report, UploadReportPublic.model_validate(body), batch)
    report.errors.sort(key=lambda problem: problem.line)
    return report


def _error_line(problem: dict[str, Any], batch: list[tuple[int, dict[str, Any]]]) -> int | None:
    """The source line of a problem the server reported for ``batch``."""
    if isinstance(problem.get("line"), int) and 1 <= problem["line"] <= len(batch):
        return batch[problem["line"] - 1][0]
    loc = problem.get("loc")
    if isinstance(loc, list) and len(loc) > 2 and loc[:2] == ["body", "labels"] and isinstance(loc[2], int) \
            and 0 <= loc[2] < len(batch):
        return batch[loc[2]][0]
    return None


def _merge(report: UploadReportPublic, part: UploadReportPublic, batch: list[tuple[int, dict[str, Any]]]) -> None:
    report.accepted += part.accepted
    report.created += part.created
    report.unchanged += part.unchanged
    for change in part.updated:
        report.updated.append(change.model_copy(update={"line": batch[change.line - 1][0]}))
    for problem in part.errors:
        report.errors.append(problem.model_copy(update={"line": batch[problem.line - 1][0]}))


def list_labels(task: str, user: str, offset: int, limit: int) -> Operation[LabelsPublic]:
    return LabelsPublic.model_validate((yield Call("GET", f"{_user_path(task, user)}/labels",
                                                   params={"offset": offset, "limit": limit})))


def delete_labels(task: str, user: str, label_id: int | None) -> Operation[DeletedPublic]:
    path = f"{_user_path(task, user)}/labels" + ("" if label_id is None else f"/{segment(label_id)}")
    return DeletedPublic.model_validate((yield Call("DELETE", path)))


# -- jobs ---------------------------------------------------------------------------------------------------------
def train(task: str, user: str | None, args: dict[str, Any]) -> Operation[JobPublic]:
    path = f"{_user_path(task, user)}/jobs" if user is not None else f"/tasks/{segment(task)}/prior/jobs"
    return JobPublic.model_validate((yield Call("POST", path, json=args)))


def get_job(job_id: int) -> Operation[JobPublic]:
    return JobPublic.model_validate((yield Call("GET", f"/jobs/{segment(job_id)}")))


def list_jobs(state: str | None, task: str | None, offset: int, limit: int) -> Operation[JobsPublic]:
    return JobsPublic.model_validate((yield Call("GET", "/jobs", params={"state": state, "task": task,
                                                                         "offset": offset, "limit": limit})))


def cancel_job(job_id: int) -> Operation[JobPublic]:
    return JobPublic.model_validate((yield Call("POST", f"/jobs/{segment(job_id)}/cancel")))


def wait(job_id: int, *, poll_interval: float, timeout: float | None, on_progress: ProgressCallback | None,
         raise_on_failure: bool) -> Operation[JobPublic]:
    """Polls a job until it finishes; ``on_progress`` sees the job each time its state or progress changes."""
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: tuple[str, float] | None = None
    while True:
        job = yield from get_job(job_id)
        if on_progress is not None and (job.state, job.progress) != seen:
            seen = (job.state, job.progress)
            on_progress(job)
        if job.state in FINISHED:
            if raise_on_failure and job.state != "succeeded":
                raise JobFailedError(job)
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(job, timeout)
        pause = poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic()))
        yield Sleep(pause)


def train_and_wait(task: str, user: str | None, args: dict[str, Any], **wait_options: Any) -> Operation[JobPublic]:
    job = yield from train(task, user, args)
    return (yield from wait(job.id, **wait_options))


# -- adapters -----------------------------------------------------------------------------------------------------
def list_versions(task: str, user: str) -> Operation[AdapterVersionsPublic]:
    return AdapterVersionsPublic.model_validate((yield Call("GET", f"{_user_path(task, user)}/adapters")))


def get_version(task: str, user: str, version: int) -> Operation[AdapterVersionPublic]:
    return AdapterVersionPublic.model_validate(
        (yield Call("GET", f"{_user_path(task, user)}/adapters/{segment(version)}")))


def activate_version(task: str, user: str, version: int) -> Operation[AdapterVersionPublic]:
    return AdapterVersionPublic.model_validate(
        (yield Call("POST", f"{_user_path(task, user)}/adapters/{segment(version)}/activate")))


def delete_version(task: str, user: str, version: int) -> Operation[DeletedPublic]:
    return DeletedPublic.model_validate(
        (yield Call("DELETE", f"{_user_path(task, user)}/adapters/{segment(version)}")))


# -- predictions --------------------------------------------------------------------------------------------------
def predict(task: str, user: str, texts: list[str], options: dict[str, Any]) -> Operation[list[PredictionPublic]]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text in a list")
    body = yield Call("POST", f"{_user_path(task, user)}/predict", json={"texts": list(texts), **options})
    return [PredictionPublic.model_validate(item) for item in body]


def predict_mixed(rows: Iterable[Mapping[str, str]]) -> Operation[list[UserPredictionPublic]]:
    body = yield Call("POST", "/predict", json={"rows": [dict(row) for row in rows]})
    return [UserPredictionPublic.model_validate(item) for item in body]


def fanout(task: str, text: str, users: list[str] | None) -> Operation[list[UserPredictionPublic]]:
    body = yield Call("POST", f"/tasks/{segment(task)}/fanout",
                      json={"text": text, **({} if users is None else {"users": list(users)})})
    return [UserPredictionPublic.model_validate(item) for item in body]


# -- webhooks -----------------------------------------------------------------------------------------------------
def create_webhook(task: str, url: str, secret: str, events: list[str] | None) -> Operation[WebhookPublic]:
    body = {"url": url, "secret": secret, **({} if events is None else {"events": list(events)})}
    return WebhookPublic.model_validate((yield Call("POST", f"/tasks/{segment(task)}/webhooks", json=body)))


def list_webhooks(task: str) -> Operation[WebhooksPublic]:
    return WebhooksPublic.model_validate((yield Call("GET", f"/tasks/{segment(task)}/webhooks")))


def delete_webhook(task: str, webhook_id: int) -> Operation[DeletedPublic]:
    return DeletedPublic.model_validate(
        (yield Call("DELETE", f"/tasks/{segment(task)}/webhooks/{segment(webhook_id)}")))


def list_deliveries(task: str, webhook_id: int, state: str | None, offset: int,
                    limit: int) -> Operation[WebhookDeliveriesPublic]:
    return WebhookDeliveriesPublic.model_validate(
        (yield Call("GET", f"/tasks/{segment(task)}/webhooks/{segment(webhook_id)}/deliveries",
                    params={"state": state, "offset": offset, "limit": limit})))


def redeliver(task: str, webhook_id: int, delivery_id: int) -> Operation[WebhookDeliveryPublic]:
    return WebhookDeliveryPublic.model_validate(
        (yield Call("POST", f"/tasks/{segment(task)}/webhooks/{segment(webhook_id)}/deliveries/"
                            f"{segment(delivery_id)}/redeliver")))
