"""The client without a server: answers come from ``httpx.MockTransport``, so retries, backoff, ``Retry-After``,
timeouts, configuration, the error tree and label chunking are checked exactly and fast. The real server is
driven in ``tests/e2e/test_python_client.py``."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from localize.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    Client,
    JobFailedError,
    LabelFileError,
    NoAdapterError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
    WaitTimeoutError,
)

TASK = {"id": 1, "name": "gold", "labels": ["negative", "positive"], "description": "", "created_at": "2025-01-15T09:30:00Z"}


def problem(status: int, slug: str, title: str, detail: str, **extra) -> httpx.Response:
    return httpx.Response(status, json={"type": f"/problems/{slug}", "title": title, "status": status,
                                        "detail": detail, **extra},
                          headers={"content-type": "application/problem+json", **extra.pop("headers", {})})


def make_client(handler, **kw) -> tuple[Client, list[float]]:
    client = Client("http://api.test", api_key="key", transport=httpx.MockTransport(handler), **kw)
    slept: list[float] = []
    client._sleep = slept.append  # type: ignore[method-assign]
    return client, slept


def test_importing_the_client_loads_neither_torch_nor_the_server_application() -> None:
    code = "import sys, localize.client; print('torch' in sys.modules, 'localize.api.app' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_base_url_and_key_come_from_arguments_then_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LOCALIZE_URL", "http://env.test:9000/")
    monkeypatch.setenv("LOCALIZE_API_KEY", "env-key")
    seen = []
    client = Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=TASK)))
    client.tasks.get("gold")
    assert str(seen[0].url) == "http://env.test:9000/tasks/gold"
    assert seen[0].headers["authorization"] == "Bearer env-key"
    client = Client("http://arg.test", api_key="arg-key",
                    transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=TASK)))
    client.tasks.get("a/b")  # a name is always one path segment
    assert seen[1].url.raw_path == b"/tasks/a%2Fb" and seen[1].headers["authorization"] == "Bearer arg-key"
    monkeypatch.delenv("LOCALIZE_URL")
    assert Client().config.base_url == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="base URL 'ftp://x' must start with http"):
        Client("ftp://x")


def test_responses_are_the_apis_own_models() -> None:
    client, _ = make_client(lambda request: httpx.Response(201, json=TASK))
    task = client.tasks.create("gold", ["negative", "positive"])
    from localize.api.schemas import TaskPublic

    assert isinstance(task, TaskPublic) and task.labels == ["negative", "positive"]
    assert task.created_at.tzinfo is not None


def test_problem_details_become_typed_errors() -> None:
    answers = iter([
        problem(404, "no-adapter", "No trained adapter", "user 'john' has no trained adapter for task 'gold'"),
        problem(404, "not-found", "Not found", "task 'x' does not exist"),
        problem(401, "unauthorized", "Unauthorized", "invalid API key"),
        problem(422, "validation-error", "Invalid input", "invalid request: body.name: too long",
                errors=[{"loc": ["body", "name"], "field": "body.name", "message": "too long", "type": "x"}]),
        httpx.Response(502, text="Bad gateway from a proxy"),
    ])
    client, slept = make_client(lambda request: next(answers))
    with pytest.raises(NoAdapterError) as caught:
        client.predict("gold", "john", ["x"])
    error = caught.value
    assert (error.status, error.title, error.type) == (404, "No trained adapter", "/problems/no-adapter")
    assert error.detail == "user 'john' has no trained adapter for task 'gold'" and error.detail in str(error)
    assert error.instance is None
    with pytest.raises(NotFoundError) as caught:
        client.tasks.get("x")
    assert not isinstance(caught.value, NoAdapterError)
    with pytest.raises(AuthenticationError, match="invalid API key"):
        client.tasks.list()
    with pytest.raises(ValidationError) as caught:
        client.users.create("x" * 300)
    assert caught.value.errors[0]["field"] == "body.name"
    with pytest.raises(Exception) as caught:
        client.tasks.list()
    assert caught.value.status == 502 and "Bad gateway from a proxy" in caught.value.detail
    assert slept == []  # none of these is retried


def test_429_and_503_are_retried_honouring_retry_after_then_backing_off() -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    answers = iter([
        problem(429, "too-many-requests", "Too Many Requests", "slow down", headers={"Retry-After": "3"}),
        problem(503, "service-unavailable", "Service Unavailable", "starting", headers={"Retry-After": later}),
        problem(503, "adapter-unavailable", "Adapter cannot be served", "store down"),
        httpx.Response(200, json={"data": [TASK], "count": 1}),
    ])
    client, slept = make_client(lambda request: next(answers), max_retries=3)
    assert client.tasks.list().count == 1
    assert slept[0] == 3.0
    assert 28 <= slept[1] <= 30  # an HTTP-date Retry-After
    assert 0.5 * 0.75 * 4 <= slept[2] <= 0.5 * 1.25 * 4  # no Retry-After: exponential backoff (third attempt)


def test_retries_give_up_after_max_retries_with_the_last_answer() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return problem(429, "too-many-requests", "Too Many Requests", "slow down", headers={"Retry-After": "1000"})

    client, slept = make_client(handler, max_retries=2)
    with pytest.raises(RateLimitError, match="slow down") as caught:
        client.jobs.train("gold", "john", method="head")
    assert caught.value.status == 429 and len(calls) == 3
    assert slept == [60.0, 60.0]  # a Retry-After longer than a minute is cut to one
    assert json.loads(calls[0].content) == {"method": "head"}


def test_refused_connections_and_failed_reads_are_retried_but_a_post_that_timed_out_is_not() -> None:
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client, slept = make_client(refuse, max_retries=2)
    with pytest.raises(APIConnectionError, match="GET http://api.test/tasks failed: connection refused"):
        client.tasks.list()
    assert len(attempts) == 3 and len(slept) == 2

    def slow(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    attempts.clear()
    client, slept = make_client(slow, max_retries=2)
    with pytest.raises(APITimeoutError, match="POST http://api.test/tasks/gold/users/john/jobs timed out"):
        client.jobs.train("gold", "john")  # it may have been queued: never sent twice
    assert len(attempts) == 1 and slept == []
    attempts.clear()
    with pytest.raises(APITimeoutError, match="GET http://api.test/jobs/3 timed out"):
        client.jobs.get(3)  # a read is safe to repeat
    assert len(attempts) == 3 and len(slept) == 2


def test_the_timeout_is_applied(monkeypatch) -> None:
    assert Client("http://x", timeout=2.5)._http.timeout.read == 2.5


class LabelServer:
    """A label route with the server's rules in miniature: at most ``max_rows`` rows (413), a row whose label is not
    in the task is a row error, a request whose rows are all bad is a 422, and a non-string text fails validation."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows, self.requests, self.stored = max_rows, [], {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["labels"]
        self.requests.append(len(rows))
        if len(rows) > self.max_rows:
            return problem(413, "payload-too-large", "Payload too large",
                           f"{len(rows)} rows is over the limit of {self.max_rows} rows per request")
        wrong = [{"loc": ["body", "labels", i, "text"], "field": f"body.labels.{i}.text",
                  "message": "Input should be a valid string", "type": "string_type"}
                 for i, row in enumerate(rows) if not isinstance(row["text"], str)]
        if wrong:
            return problem(422, "validation-error", "Invalid input", "invalid request", errors=wrong)
        errors, created = [], 0
        for line, row in enumerate(rows, start=1):
            if row["label"] not in ("negative", "positive"):
                errors.append({"line": line, "message": f"label {row['label']!r} is not one of the task's labels"})
            else:
                self.stored[row["text"]] = row["label"]
                created += 1
        if not created:
            return problem(422, "validation-error", "Invalid input", "no label row was accepted", errors=errors)
        return httpx.Response(200, json={"accepted": created, "created": created, "updated": [], "unchanged": 0,
                                         "errors": errors})


def test_uploads_are_chunked_to_the_servers_row_limit_and_collect_row_errors() -> None:
    server = LabelServer(max_rows=4)
    client, _ = make_client(server)
    rows = [{"text": f"text {i}", "label": "positive"} for i in range(1, 5)]
    rows[2]["label"] = "bullish"                                            # line 3: a row error in a good chunk
    rows += [{"text": f"bad {i}", "label": "up"} for i in range(5, 9)]      # lines 5-8: a chunk with no good row
    rows.append(("text 9", "negative"))                                     # line 9: a (text, label) pair
    rows.append({"text": 10, "label": "negative"})                          # line 10: refused by request validation
    rows.append("not a row")                                                # line 11: unreadable, never sent
    report = client.labels.upload("gold", "john", iter(rows), chunk_rows=10)
    assert server.requests == [10, 4, 4, 2, 1]  # cut to the limit the 413 named; line 10 dropped and the rest resent
    assert report.accepted == report.created == 4
    assert [(error.line, error.message[:22]) for error in report.errors] == [
        (3, "label 'bullish' is not"), (5, "label 'up' is not one "), (6, "label 'up' is not one "),
        (7, "label 'up' is not one "), (8, "label 'up' is not one "), (10, "Input should be a vali"),
        (11, "expected a mapping wit")]
    assert sorted(server.stored) == ["text 1", "text 2", "text 4", "text 9"]


def test_uploads_read_csv_and_jsonl_files_with_their_own_line_numbers(tmp_path) -> None:
    server = LabelServer(max_rows=2)
    client, _ = make_client(server)
    path = tmp_path / "john.csv"
    path.write_text('text,label,item\n"gold, up",positive,\nsilver down,bearish,t-2\n"broken\nmore",negative,t-3\n'
                    "oil up,positive,t-4\n")
    report = client.labels.upload("gold", "john", path)
    assert report.created == 3 and [(e.line, e.message[:9]) for e in report.errors] == [(3, "label 'be")]
    assert server.stored == {"gold, up": "positive", "broken\nmore": "negative", "oil up": "positive"}
    jsonl = tmp_path / "john.jsonl"
    jsonl.write_text('{"text": "a", "label": "positive"}\n{oops\n\n{"text": "b", "label": "negative"}\n')
    report = client.labels.upload("gold", "john", str(jsonl))
    assert report.created == 2 and [e.line for e in report.errors] == [2]
    (tmp_path / "bad.csv").write_text("words,label\nx,positive\n")
    with pytest.raises(LabelFileError, match=r"bad.csv': CSV header is missing column\(s\) \['text'\]"):
        client.labels.upload("gold", "john", tmp_path / "bad.csv")


JOB = {"id": 3, "task": "gold", "user": "john", "state": "queued", "progress": 0.0, "args": {}, "metrics": {},
       "error": None, "adapter_version": None, "activated": False, "attempts": 0, "created_at": "2025-01-15T09:30:00Z",
       "started_at": None, "finished_at": None, "events": []}


def test_train_and_wait_reports_progress_and_raises_on_failure() -> None:
    states = iter([("queued", 0.0), ("running", 0.0), ("running", 0.5), ("running", 0.5), ("succeeded", 1.0)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=JOB)
        state, progress = next(states)
        return httpx.Response(200, json={**JOB, "state": state, "progress": progress,
                                         "adapter_version": 1 if state == "succeeded" else None})

    client, slept = make_client(handler)
    seen = []
    job = client.jobs.train_and_wait("gold", "john", method="head", poll_interval=0.25,
                                     on_progress=lambda job: seen.append((job.state, job.progress)))
    assert job.adapter_version == 1
    assert seen == [("queued", 0.0), ("running", 0.0), ("running", 0.5), ("succeeded", 1.0)]
    assert slept == [0.25] * 4

    failed, _ = make_client(lambda r: httpx.Response(200, json={**JOB, "state": "failed", "error": "no labels"}))
    with pytest.raises(JobFailedError, match="job 3 failed: no labels") as caught:
        failed.jobs.wait(3)
    assert caught.value.job.error == "no labels"
    assert failed.jobs.wait(3, raise_on_failure=False).state == "failed"
    stuck, _ = make_client(lambda r: httpx.Response(200, json={**JOB, "state": "running", "progress": 0.3}))
    with pytest.raises(WaitTimeoutError, match=r"job 3 is still running \(progress 30%\) after 0 s"):
        stuck.jobs.wait(3, timeout=0)


def test_the_async_client_shares_the_operations_and_the_retries() -> None:
    answers = iter([problem(503, "service-unavailable", "Service Unavailable", "busy", headers={"Retry-After": "0"}),
                    httpx.Response(200, json=[{"user": "john", "task": "gold", "text": "t", "label": "positive",
                                               "probabilities": {"negative": 0.1, "positive": 0.9}, "version": 1,
                                               "source": "user"}]),
                    problem(503, "service-unavailable", "Service Unavailable", "busy"),
                    problem(503, "service-unavailable", "Service Unavailable", "still busy")])
    slept = []

    async def main() -> None:
        async with AsyncClient("http://api.test", api_key="k", max_retries=1,
                               transport=httpx.MockTransport(lambda request: next(answers))) as client:
            async def sleep(seconds: float) -> None:
                slept.append(seconds)

            client._sleep = sleep  # type: ignore[method-assign]
            (answer,) = await client.fanout("gold", "t")
            assert (answer.user, answer.label, answer.version) == ("john", "positive", 1)
            with pytest.raises(ServiceUnavailableError, match="still busy"):
                await client.predict.mixed([{"user": "john", "task": "gold", "text": "t"}])

    asyncio.run(main())
    assert slept[0] == 0.0 and len(slept) == 2


ADAPTER = {"id": 4, "task": "gold", "user": "john", "version": 2, "method": "head", "is_active": True, "metrics": {},
           "training_args": {}, "n_labels": 3, "trainable_params": 10, "nbytes": 100, "created_at": TASK["created_at"]}
USER = {"id": 1, "name": "john", "created_at": TASK["created_at"]}
HOOK = {"id": 1, "task": "gold", "url": "http://h.test/x", "events": ["job.failed"], "created_at": TASK["created_at"]}
PAGE = {"data": [], "count": 0}
# (call, method, path with query, JSON body sent, answer)
ROUTES = [
    (lambda c: c.tasks.list(), "GET", "/tasks", None, {"data": [TASK], "count": 1}),
    (lambda c: c.users.create("john"), "POST", "/users", {"name": "john"}, USER),
    (lambda c: c.users.list(task="gold", limit=5), "GET", "/users?task=gold&offset=0&limit=5", None, PAGE),
    (lambda c: c.users.issue_key("john"), "POST", "/users/john/keys", None, {"user": "john", "api_key": "lk_x"}),
    (lambda c: c.labels.list("gold", "john", offset=10), "GET", "/tasks/gold/users/john/labels?offset=10&limit=100",
     None, PAGE),
    (lambda c: c.labels.delete("gold", "john", 7), "DELETE", "/tasks/gold/users/john/labels/7", None, {"deleted": 1}),
    (lambda c: c.labels.delete("gold", "john"), "DELETE", "/tasks/gold/users/john/labels", None, {"deleted": 3}),
    (lambda c: c.labels.upload_bulk("gold", [{"user": "ann", "text": "t", "label": "positive", "extra": 1}]), "POST",
     "/tasks/gold/labels", {"labels": [{"user": "ann", "text": "t", "label": "positive"}]},
     {"accepted": 1, "created": 1, "updated": [], "unchanged": 0, "errors": []}),
    (lambda c: c.jobs.train_prior("gold", max_epochs=3), "POST", "/tasks/gold/prior/jobs", {"max_epochs": 3},
     {**JOB, "user": None}),
    (lambda c: c.jobs.list(state="failed"), "GET", "/jobs?state=failed&offset=0&limit=100", None, PAGE),
    (lambda c: c.jobs.cancel(3), "POST", "/jobs/3/cancel", None, {**JOB, "state": "cancelled"}),
    (lambda c: c.adapters.list("gold", "john"), "GET", "/tasks/gold/users/john/adapters", None,
     {"data": [ADAPTER], "count": 1}),
    (lambda c: c.adapters.get("gold", "john", 2), "GET", "/tasks/gold/users/john/adapters/2", None, ADAPTER),
    (lambda c: c.adapters.activate("gold", "john", 2), "POST", "/tasks/gold/users/john/adapters/2/activate", None,
     ADAPTER),
    (lambda c: c.adapters.delete("gold", "john", 1), "DELETE", "/tasks/gold/users/john/adapters/1", None,
     {"deleted": 1}),
    (lambda c: c.predict("gold", "john", ["t"], target_accuracy=0.9), "POST", "/tasks/gold/users/john/predict",
     {"texts": ["t"], "target_accuracy": 0.9}, []),
    (lambda c: c.fanout("gold", "t", ["john"]), "POST", "/tasks/gold/fanout", {"text": "t", "users": ["john"]}, []),
    (lambda c: c.webhooks.create("gold", "http://h.test/x", "s" * 16, events=["job.failed"]), "POST",
     "/tasks/gold/webhooks", {"url": "http://h.test/x", "secret": "s" * 16, "events": ["job.failed"]}, HOOK),
    (lambda c: c.webhooks.list("gold"), "GET", "/tasks/gold/webhooks", None, {"data": [HOOK], "count": 1}),
    (lambda c: c.webhooks.delete("gold", 1), "DELETE", "/tasks/gold/webhooks/1", None, {"deleted": 1}),
    (lambda c: c.webhooks.deliveries("gold", 1, state="failed"), "GET",
     "/tasks/gold/webhooks/1/deliveries?state=failed&offset=0&limit=100", None, PAGE),
    (lambda c: c.webhooks.redeliver("gold", 1, 12), "POST", "/tasks/gold/webhooks/1/deliveries/12/redeliver", None,
     {"id": 12, "webhook_id": 1, "event": "job.failed", "state": "pending", "attempts": 0, "last_status": 503,
      "last_error": "HTTP 503: down", "payload": {}, "created_at": TASK["created_at"],
      "next_attempt_at": TASK["created_at"], "delivered_at": None}),
]


@pytest.mark.parametrize("call, method, path, body, answer", ROUTES, ids=[route[2] for route in ROUTES])
def test_each_call_sends_its_route_and_parses_the_answer_sync_and_async(call, method, path, body, answer) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(),
                     json.loads(request.content) if request.content else None))
        return httpx.Response(200, json=answer)

    with Client("http://api.test", transport=httpx.MockTransport(handler)) as client:
        result = call(client)

    async def main():  # noqa: ANN202
        async with AsyncClient("http://api.test", transport=httpx.MockTransport(handler)) as client:
            return await call(client)

    assert asyncio.run(main()) == result
    assert seen == [(method, path, body)] * 2
