"""Webhooks end to end in one process: an admin registers a local receiver (a real HTTP server on 127.0.0.1), the
app's background sender delivers labels.uploaded, job.succeeded, adapter.activated and job.failed, signed; a
failing receiver is retried with backoff and finally marked failed; a receiver that hangs blocks no request; the
delivery log is read over the API (through the Python client)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from api_support import ADMIN, ADMIN_KEY, JOHN_LABELS, TEXTS, Workspace, make_settings, rows, running
from fastapi.testclient import TestClient

from localize.client import Client, ConflictError, PermissionDeniedError
from localize.client import ValidationError as ClientValidationError
from localize.db.models import Webhook, WebhookDelivery
from localize.webhook_signature import sign, verify

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """A webhook receiver on a free loopback port: records every request (with its arrival time) and answers with
    ``answer(n)`` for the n-th request (an HTTP status; it may block first)."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200) -> None:
        self.answer, self.requests = answer, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                status = receiver.answer(len(receiver.requests))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [json.loads(request["body"])["event"] for request in self.requests]

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"the receiver got {self.events()} of {count} requests"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(answer: Callable[[int], int] = lambda n: 200) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def fast_settings(tmp_path, fresh_database):
    url = fresh_database()
    return make_settings(tmp_path, webhook_poll_seconds=0.05, webhook_backoff_seconds=0.2, webhook_max_attempts=3,
                         webhook_timeout_seconds=5, **({"database_url": url} if url else {}))


class AppTransport(httpx.BaseTransport):
    """Hands the Python client's requests to the app's TestClient."""

    def __init__(self, test_client: TestClient) -> None:
        self.test_client = test_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.test_client.request(request.method, request.url.raw_path.decode(), content=request.read(),
                                          headers=dict(request.headers))
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _client(ws: Workspace, key: str = ADMIN_KEY) -> Client:
    """The Python client, talking to the app in this process."""
    return Client("http://testserver", api_key=key, transport=AppTransport(ws.client), max_retries=0)


def _deliveries(client: Client, webhook_id: int, count: int, timeout: float = 30) -> list:
    """The webhook's log once ``count`` deliveries have finished (delivered or failed), oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        log = client.webhooks.deliveries("notes", webhook_id)
        done = [row for row in log.data if row.state != "pending"]
        if len(done) >= count:
            return list(reversed(log.data))
        assert time.monotonic() < deadline, f"only {len(done)} of {count} deliveries finished: {log.data}"
        time.sleep(0.05)


def test_events_are_signed_delivered_and_retried_and_the_log_is_readable(fast_settings, receivers) -> None:
    receiver = receivers(lambda n: 500 if n <= 2 else 200)  # the first two attempts fail
    with running(fast_settings) as ws:
        ws.create_task()
        john = ws.create_user("john")
        ws.create_user("jane")  # no labels: her job fails
        admin = _client(ws)
        hook = admin.webhooks.create("notes", receiver.url, SECRET)
        assert hook.events == ["job.succeeded", "job.failed", "adapter.activated", "labels.uploaded"]
        assert "secret" not in ws.client.get("/tasks/notes/webhooks", headers=ADMIN).text

        ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
        receiver.wait_for(3)  # labels.uploaded: two failed attempts, then delivered
        ws.train("john", headers=john)
        ws.queue("jane")
        ws.run_jobs()
        log = _deliveries(admin, hook.id, 4)
        receiver.wait_for(6)

    assert [row.event for row in log] == ["labels.uploaded", "adapter.activated", "job.succeeded", "job.failed"]
    assert all(row.state == "delivered" and row.last_status == 200 for row in log)
    assert [row.attempts for row in log] == [3, 1, 1, 1]
    uploaded, activated, succeeded, failed = (row.payload for row in log)
    assert uploaded["data"] == {"users": ["john"], "accepted": 24, "created": 24, "updated": 0, "unchanged": 0,
                                "errors": 0}
    assert (activated["data"]["user"], activated["data"]["version"], activated["data"]["method"]) == ("john", 1, "head")
    assert succeeded["data"]["job"]["user"] == "john" and succeeded["data"]["job"]["adapter_version"] == 1
    assert failed["data"]["job"]["user"] == "jane" and "no labels" in failed["data"]["job"]["error"]
    assert {payload["task"] for payload in (uploaded, activated, succeeded, failed)} == {"notes"}

    # Retries send the same event again: same event id, fresh timestamp and signature each time.
    first_three = [json.loads(request["body"]) for request in receiver.requests[:3]]
    assert len({body["id"] for body in first_three}) == 1
    for request in receiver.requests:
        headers = request["headers"]
        assert verify(SECRET, headers["X-Localize-Timestamp"], request["body"], headers["X-Localize-Signature"])
        assert headers["X-Localize-Event"] == json.loads(request["body"])["event"]
        assert not verify("another-secret-0123456789", headers["X-Localize-Timestamp"], request["body"],
                          headers["X-Localize-Signature"])
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:3])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # backoff 0.2 s, then doubled


def test_a_receiver_that_keeps_failing_is_marked_failed_after_the_last_attempt(fast_settings, receivers) -> None:
    receiver = receivers(lambda n: 503 if n <= 3 else 200)  # down for three attempts, then fixed
    with running(fast_settings) as ws:
        ws.create_task()
        john = ws.create_user("john")
        admin = _client(ws)
        hook = admin.webhooks.create("notes", receiver.url, SECRET, events=["labels.uploaded"])
        ws.upload("john", rows(TEXTS[:2], JOHN_LABELS[:2]), headers=john)
        (row,) = _deliveries(admin, hook.id, 1)
        assert admin.webhooks.deliveries("notes", hook.id, state="failed").count == 1
        assert admin.webhooks.deliveries("notes", hook.id, state="delivered").count == 0
        assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == ("failed", 3, 503, None)
        assert row.last_error == "HTTP 503: no"
        assert len(receiver.requests) == 3
        # Once the receiver is fixed, an operator sends it again.
        assert admin.webhooks.redeliver("notes", hook.id, row.id).state == "pending"
        (row,) = _deliveries(admin, hook.id, 1)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("delivered", 1, 200, None)
    assert len(receiver.requests) == 4


def test_a_hanging_receiver_blocks_no_request(fast_settings, receivers) -> None:
    release = threading.Event()
    receiver = receivers(lambda n: 200 if release.wait(20) else 500)
    with running(fast_settings) as ws:
        ws.create_task()
        john = ws.create_user("john")
        admin = _client(ws)
        hook = admin.webhooks.create("notes", receiver.url, SECRET, events=["labels.uploaded"])
        ws.upload("john", rows(TEXTS[:2], JOHN_LABELS[:2]), headers=john)
        receiver.wait_for(1)  # the sender is now waiting on the receiver ...
        started = time.monotonic()
        report = ws.upload("john", rows(TEXTS[2:4], JOHN_LABELS[2:4]), headers=john)  # ... and requests go on
        assert report["created"] == 2 and time.monotonic() - started < 5
        pending = admin.webhooks.deliveries("notes", hook.id, state="pending")
        assert pending.count == 2
        with pytest.raises(ConflictError, match=f"delivery {pending.data[0].id} is still pending"):
            admin.webhooks.redeliver("notes", hook.id, pending.data[0].id)
        release.set()
        assert [row.state for row in _deliveries(admin, hook.id, 2)] == ["delivered", "delivered"]


def test_webhook_routes_are_for_the_admin_and_check_their_input(client: TestClient, receivers) -> None:
    ws = Workspace(client)
    ws.create_task()
    john = ws.create_user("john")
    admin = _client(ws)
    with pytest.raises(PermissionDeniedError):
        _client(ws, john["Authorization"].removeprefix("Bearer ")).webhooks.list("notes")
    for url, secret, events, message in [
        ("ftp://example.com/x", SECRET, None, "webhook URL 'ftp://example.com/x' must be an http"),
        ("http://127.0.0.1:9/x", "short", None, "secret"),
        ("http://127.0.0.1:9/x", SECRET, ["job.started"], r"unknown webhook event\(s\) \['job.started'\]"),
        ("http://127.0.0.1:9/x", SECRET, [], "at least one event"),
    ]:
        with pytest.raises(ClientValidationError, match=message):
            admin.webhooks.create("notes", url, secret, events=events)
    hook = admin.webhooks.create("notes", receivers().url, SECRET, events=["job.failed"])
    assert [row.id for row in admin.webhooks.list("notes").data] == [hook.id]
    assert admin.webhooks.delete("notes", hook.id).deleted == 1
    assert admin.webhooks.list("notes").count == 0
    assert client.get(f"/tasks/notes/webhooks/{hook.id}/deliveries", headers=ADMIN).status_code == 404

    # Deleting the task takes its webhooks and their delivery logs with it (ON DELETE CASCADE).
    admin.webhooks.create("notes", receivers().url, SECRET, events=["labels.uploaded"])
    ws.upload("john", rows(TEXTS[:1], JOHN_LABELS[:1]), headers=john)
    assert (ws.count(Webhook), ws.count(WebhookDelivery)) == (1, 1)
    assert client.delete("/tasks/notes", headers=ADMIN).status_code == 200
    assert (ws.count(Webhook), ws.count(WebhookDelivery)) == (0, 0)


def test_signatures_cover_the_timestamp_and_the_body() -> None:
    body, now = b'{"event":"job.failed"}', 1_700_000_000
    signature = sign(SECRET, now, body)
    assert signature.startswith("sha256=") and verify(SECRET, str(now), body, signature, now=now + 10)
    assert not verify(SECRET, str(now), body + b" ", signature, now=now)              # the body changed
    assert not verify(SECRET, str(now + 1), body, signature, now=now)                 # the timestamp changed
    assert not verify(SECRET, str(now), body, signature, now=now + 301)               # too old: a replay
    assert not verify(SECRET, None, body, signature) and not verify(SECRET, "x", body, signature)
