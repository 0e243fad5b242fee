"""The synchronous client: ``Client`` and its resource groups."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from localize.api.schemas import (
    AdapterVersionPublic,
    AdapterVersionsPublic,
    ApiKeyPublic,
    DeletedPublic,
    JobPublic,
    JobsPublic,
    LabelsPublic,
    PredictionPublic,
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
from localize.client import _operations as ops
from localize.client._core import Call, ClientConfig, Operation, Sleep, T, decode, request_arguments
from localize.client._operations import DEFAULT_CHUNK_ROWS, LabelSource, ProgressCallback
from localize.client.errors import APIConnectionError, APIStatusError, APITimeoutError


class Client:
    """A client of the localize HTTP API.

    ``base_url`` and ``api_key`` default to ``LOCALIZE_URL`` and ``LOCALIZE_API_KEY`` (the admin key, or a user's
    key). Answers 429 and 503, and connections that could not be made, are retried ``max_retries`` times with
    exponential backoff (honouring ``Retry-After``); any other error answer raises its typed error at once."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | httpx.Timeout | None = 30.0, max_retries: int = 2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout, max_retries)
        self._http = httpx.Client(base_url=self.config.base_url, headers=self.config.headers,
                                  timeout=self.config.timeout, transport=transport)
        self.tasks = Tasks(self)
        self.users = Users(self)
        self.labels = Labels(self)
        self.jobs = Jobs(self)
        self.adapters = Adapters(self)
        self.predict = Predict(self)
        self.webhooks = Webhooks(self)

    def fanout(self, task: str, text: str, users: list[str] | None = None) -> list[UserPredictionPublic]:
        """One text classified for every user with an active adapter in the task, or for ``users`` (admin)."""
        return self.predict.fanout(task, text, users)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _run(self, operation: Operation[T]) -> T:
        try:
            step = next(operation)
            while True:
                try:
                    if isinstance(step, Sleep):
                        self._sleep(step.seconds)
                        result = None
                    else:
                        result = self._send(step)
                except APIStatusError as error:  # the operation may handle it (an upload collects row errors)
                    step = operation.throw(error)
                    continue
                step = operation.send(result)
        except StopIteration as stop:
            return stop.value

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(**request_arguments(call))
            except httpx.TransportError as error:
                delay = self.config.transport_retry_delay(attempt, error, call.method)
                if delay is None:
                    raise _transport_error(error, call, self.config.base_url) from error
            else:
                delay = self.config.retry_delay(attempt, response)
                if delay is None:
                    return decode(response)
            self._sleep(delay)
            attempt += 1


def _transport_error(error: httpx.TransportError, call: Call, base_url: str) -> APIConnectionError:
    where = f"{call.method} {base_url}{call.path}"
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"{where} timed out ({type(error).__name__})")
    return APIConnectionError(f"{where} failed: {error or type(error).__name__}")


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class Tasks(_Resource):
    def create(self, name: str, labels: list[str], *, description: str = "") -> TaskPublic:
        """Create a task with its label set (admin)."""
        return self._client._run(ops.create_task(name, labels, description))

    def list(self) -> TasksPublic:
        return self._client._run(ops.list_tasks())

    def get(self, name: str) -> TaskPublic:
        return self._client._run(ops.get_task(name))


class Users(_Resource):
    def create(self, name: str) -> UserPublic:
        """Create a user (admin)."""
        return self._client._run(ops.create_user(name))

    def list(self, *, task: str | None = None, offset: int = 0, limit: int = 100) -> UsersPublic:
        return self._client._run(ops.list_users(task, offset, limit))

    def issue_key(self, name: str) -> ApiKeyPublic:
        """A new API key for the user (shown once; the previous key stops working)."""
        return self._client._run(ops.issue_key(name))


class Labels(_Resource):
    def upload(self, task: str, user: str, labels: LabelSource, *,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> UploadReportPublic:
        """Upload a user's labels from a .jsonl / .csv file or an iterable of rows (dicts with ``text``, ``label``
        and optional ``item``, ``split``; or ``(text, label)`` pairs), ``chunk_rows`` per request. Returns one
        report for all chunks; bad rows are in its ``errors`` by their line in the file (or position)."""
        return self._client._run(ops.upload_labels(f"{ops._user_path(task, user)}/labels", labels, bulk=False,
                                                   chunk_rows=chunk_rows))

    def upload_bulk(self, task: str, labels: LabelSource, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> UploadReportPublic:
        """Upload labels of many users, each row naming its ``user`` (admin)."""
        return self._client._run(ops.upload_labels(f"/tasks/{ops.segment(task)}/labels", labels, bulk=True,
                                                   chunk_rows=chunk_rows))

    def list(self, task: str, user: str, *, offset: int = 0, limit: int = 100) -> LabelsPublic:
        return self._client._run(ops.list_labels(task, user, offset, limit))

    def delete(self, task: str, user: str, label_id: int | None = None) -> DeletedPublic:
        """Delete one label, or (without ``label_id``) all of the user's labels in the task."""
        return self._client._run(ops.delete_labels(task, user, label_id))


class Jobs(_Resource):
    def train(self, task: str, user: str, **args: Any) -> JobPublic:
        """Queue training of the user's adapter; ``args`` are training arguments (``method``, ``max_epochs``...)."""
        return self._client._run(ops.train(task, user, args))

    def train_prior(self, task: str, **args: Any) -> JobPublic:
        """Queue training of the task prior on every user's labels (admin)."""
        return self._client._run(ops.train(task, None, args))

    def get(self, job_id: int) -> JobPublic:
        return self._client._run(ops.get_job(job_id))

    def list(self, *, state: str | None = None, task: str | None = None, offset: int = 0,
             limit: int = 100) -> JobsPublic:
        return self._client._run(ops.list_jobs(state, task, offset, limit))

    def cancel(self, job_id: int) -> JobPublic:
        return self._client._run(ops.cancel_job(job_id))

    def wait(self, job_id: int, *, poll_interval: float = 0.5, timeout: float | None = None,
             on_progress: ProgressCallback | None = None, raise_on_failure: bool = True) -> JobPublic:
        """Wait until the job finishes; ``on_progress(job)`` is called whenever its state or progress changes.
        A failed or cancelled job raises JobFailedError (unless ``raise_on_failure=False``); past ``timeout``
        seconds, WaitTimeoutError."""
        return self._client._run(ops.wait(job_id, poll_interval=poll_interval, timeout=timeout,
                                          on_progress=on_progress, raise_on_failure=raise_on_failure))

    def train_and_wait(self, task: str, user: str, *, poll_interval: float = 0.5, timeout: float | None = None,
                       on_progress: ProgressCallback | None = None, **args: Any) -> JobPublic:
        """:meth:`train`, then :meth:`wait`."""
        return self._client._run(ops.train_and_wait(task, user, args, poll_interval=poll_interval, timeout=timeout,
                                                    on_progress=on_progress, raise_on_failure=True))


class Adapters(_Resource):
    def list(self, task: str, user: str) -> AdapterVersionsPublic:
        """The user's adapter versions, oldest first; ``is_active`` marks the one that serves."""
        return self._client._run(ops.list_versions(task, user))

    def get(self, task: str, user: str, version: int) -> AdapterVersionPublic:
        return self._client._run(ops.get_version(task, user, version))

    def activate(self, task: str, user: str, version: int) -> AdapterVersionPublic:
        """Make ``version`` the one that serves (an older one: a rollback)."""
        return self._client._run(ops.activate_version(task, user, version))

    def delete(self, task: str, user: str, version: int) -> DeletedPublic:
        return self._client._run(ops.delete_version(task, user, version))


class Predict(_Resource):
    def __call__(self, task: str, user: str, texts: list[str], **options: Any) -> list[PredictionPublic]:
        """Classify ``texts`` with the user's active adapter."""
        return self._client._run(ops.predict(task, user, texts, options))

    def mixed(self, rows: Iterable[Mapping[str, str]]) -> list[UserPredictionPublic]:
        """Classify rows (``user``, ``task``, ``text``) of many users in one batched pass."""
        return self._client._run(ops.predict_mixed(rows))

    def fanout(self, task: str, text: str, users: list[str] | None = None) -> list[UserPredictionPublic]:
        """One text for every user with an active adapter in the task, or for ``users`` (admin)."""
        return self._client._run(ops.fanout(task, text, users))


class Webhooks(_Resource):
    def create(self, task: str, url: str, secret: str, *, events: list[str] | None = None) -> WebhookPublic:
        """Subscribe ``url`` to the task's ``events`` (default: all); deliveries are signed with ``secret`` (admin)."""
        return self._client._run(ops.create_webhook(task, url, secret, events))

    def list(self, task: str) -> WebhooksPublic:
        return self._client._run(ops.list_webhooks(task))

    def delete(self, task: str, webhook_id: int) -> DeletedPublic:
        return self._client._run(ops.delete_webhook(task, webhook_id))

    def deliveries(self, task: str, webhook_id: int, *, state: str | None = None, offset: int = 0,
                   limit: int = 100) -> WebhookDeliveriesPublic:
        """The webhook's delivery log, newest first."""
        return self._client._run(ops.list_deliveries(task, webhook_id, state, offset, limit))

    def redeliver(self, task: str, webhook_id: int, delivery_id: int) -> WebhookDeliveryPublic:
        """Send a failed (or delivered) delivery again, with a fresh series of attempts."""
        return self._client._run(ops.redeliver(task, webhook_id, delivery_id))
