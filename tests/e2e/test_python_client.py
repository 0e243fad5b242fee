"""The Python client against a real `localize serve` (API and worker processes on a loopback port): the README's
example, run as written, and every resource group, sync and async, with the server's own errors."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localize.bench.server import child_env, free_port, localize_command, running_server
from localize.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    NoAdapterError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from localize.webhook_signature import verify

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-client-admin-key"
SECRET = "e2e-webhook-secret-0123456789"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("client-e2e")
    port = free_port()
    env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY, LOCALIZE_WORKER_POLL_SECONDS="0.1")
    with running_server(localize_command("serve", "--port", str(port)), env, port, log_path=home / "server.log") as url:
        yield url  # stopped afterwards with the worker it started


class Receiver:
    """A webhook receiver on a free loopback port that records every delivery and answers 204."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict, bytes]] = []
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                deliveries.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return sorted(json.loads(body)["event"] for _, body in self.deliveries)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def readme_example() -> str:
    """The first Python block after the README's "Python client" heading, exactly as it is written there."""
    heading = re.search(r"^#+ Python client$", README.read_text(), re.M)
    assert heading, "the README has no Python client section"
    match = re.search(r"```python\n(.*?)```", README.read_text()[heading.end():], re.S)
    assert match, "the README's Python client section has no python example"
    return match.group(1)


def test_the_readme_example_runs_as_written(server: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOCALIZE_URL", server)
    monkeypatch.setenv("LOCALIZE_API_KEY", ADMIN_KEY)
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # noqa: S102  (our own README)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("404 user 'john' has no trained adapter for task 'gold'")
    assert printed[1] == "12 []"
    # The job's progress as the example prints it; a quick job may never be seen running.
    assert all(line.split()[0] in ("queued", "running") for line in printed[2:-2]) and printed[-2] == "succeeded 100%"
    assert printed[-1] == "positive 1"
    assert namespace["job"].adapter_version == 1


def test_every_resource_group_against_the_real_server(server: str, tmp_path: Path, tiny_texts, receiver) -> None:
    texts, ann_labels, _, label_set = tiny_texts
    with Client(server, api_key=ADMIN_KEY, timeout=60) as admin:
        assert admin.tasks.create("notes", label_set, description="work or personal").name == "notes"
        hook = admin.webhooks.create("notes", receiver.url, SECRET)
        with pytest.raises(ConflictError) as caught:
            admin.tasks.create("notes", label_set)
        assert caught.value.status == 409 and caught.value.title == "Conflict" and "notes" in caught.value.detail
        admin.users.create("ann")
        key = admin.users.issue_key("ann").api_key
        assert "ann" in [user.name for user in admin.users.list().data]

    with pytest.raises(AuthenticationError, match="invalid API key"):
        Client(server, api_key="not-a-key").tasks.list()

    path = tmp_path / "ann.csv"
    lines = ["text,label"] + [f'"{text}",{label}' for text, label in zip(texts, ann_labels)]
    lines.insert(3, "a text with a label the task lacks,holiday")  # line 4 of the file
    path.write_text("\n".join(lines) + "\n")
    with Client(server, api_key=key, timeout=60) as ann:
        with pytest.raises(PermissionDeniedError):
            ann.tasks.create("mine", ["a", "b"])
        with pytest.raises(NotFoundError):
            ann.labels.list("notes", "someone-else")
        with pytest.raises(NoAdapterError):
            ann.predict("notes", "ann", ["Invoice 7 from Hooli"])
        with pytest.raises(ValidationError) as caught:  # a request that is wrong as a whole is raised, with `errors`
            ann.jobs.train("notes", "ann", max_epochs=-1)
        assert caught.value.status == 422 and "max_epochs" in caught.value.detail

        report = ann.labels.upload("notes", "ann", path, chunk_rows=10)  # three requests
        assert report.created == report.accepted == len(texts)
        assert [(error.line, "holiday" in error.message) for error in report.errors] == [(4, True)]
        assert ann.labels.list("notes", "ann", limit=5).count == len(texts)

        progress = []
        first = ann.jobs.train_and_wait("notes", "ann", method="head", max_epochs=10, poll_interval=0.1,
                                        on_progress=lambda job: progress.append(job.state))
        assert first.state == "succeeded" and first.adapter_version == 1
        assert progress[0] in ("queued", "running") and progress[-1] == "succeeded"
        second = ann.jobs.train_and_wait("notes", "ann", method="head", max_epochs=10, seed=1, poll_interval=0.1)
        versions = ann.adapters.list("notes", "ann")
        assert [(v.version, v.is_active) for v in versions.data] == [(1, False), (2, True)]
        assert second.adapter_version == 2 and ann.predict("notes", "ann", [texts[0]])[0].version == 2

        assert ann.adapters.activate("notes", "ann", 1).is_active  # a rollback
        (answer,) = ann.predict("notes", "ann", ["Invoice 731 from Hooli for office printer toner"])
        assert (answer.label, answer.version, answer.source) == ("work", 1, "user")
        assert [job.id for job in ann.jobs.list(task="notes").data] == [second.id, first.id]

    async def with_the_async_client() -> None:
        async with AsyncClient(server, api_key=ADMIN_KEY, timeout=60) as admin:
            assert (await admin.tasks.get("notes")).labels == label_set
            (fanned,) = await admin.fanout("notes", "Dinner with my family at the pizzeria")
            assert (fanned.user, fanned.label, fanned.version) == ("ann", "personal", 1)
            mixed = await admin.predict.mixed([{"user": "ann", "task": "notes", "text": texts[0]}])
            assert mixed[0].label == ann_labels[0]
            assert (await admin.jobs.get(first.id)).events  # with its events
            with pytest.raises(NotFoundError, match="404 Not found: .*'nobody'"):
                await admin.adapters.list("notes", "nobody")

    asyncio.run(with_the_async_client())

    # The worker process wrote its events (versions activated) to the delivery table; the API process's sender
    # delivered them, with the upload's, the activation's and the finished jobs', each signed.
    expected = sorted(["labels.uploaded"] * 3 + ["adapter.activated"] * 3 + ["job.succeeded"] * 2)  # 3 chunks
    deadline = time.monotonic() + 30
    while receiver.events() != expected:
        assert time.monotonic() < deadline, receiver.events()
        time.sleep(0.1)
    for headers, body in receiver.deliveries:
        assert verify(SECRET, headers["X-Localize-Timestamp"], body, headers["X-Localize-Signature"])
    with Client(server, api_key=ADMIN_KEY) as admin:
        log = admin.webhooks.deliveries("notes", hook.id)
    assert log.count == 8 and {row.state for row in log.data} == {"delivered"}
