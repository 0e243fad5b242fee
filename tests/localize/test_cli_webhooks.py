"""``localize webhooks ...`` in-process: add (with a given or a generated secret), list, read the delivery log that
an upload filled, remove; bad input exits non-zero naming the problem."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from localize import cli
from localize.db.models import Webhook
from localize.db.session import session_scope
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services.labels import upsert_labels
from localize.services.tasks import get_task
from localize.settings import Settings


@pytest.fixture
def run(tmp_path: Path, monkeypatch):  # noqa: ANN201
    monkeypatch.setenv("LOCALIZE_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "console", Console(width=200))
    monkeypatch.setattr(cli, "err_console", Console(width=200, stderr=True))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli.app, ["--home", str(tmp_path), *args])
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    invoke("tasks", "create", "gold", "--labels", "negative,positive")
    return invoke


def test_add_list_deliveries_and_remove(run, tmp_path: Path) -> None:
    added = run("webhooks", "add", "gold", "https://hooks.example.com/a", "--events", "labels.uploaded,job.failed")
    assert "webhook 1: job.failed, labels.uploaded of task 'gold' -> https://hooks.example.com/a" in added
    secret = added.split("secret (shown once): ", 1)[1].split()[0]
    run("webhooks", "add", "gold", "http://127.0.0.1:9/b", "--secret", "s" * 16)
    listed = json.loads(run("webhooks", "list", "gold", "--json"))
    assert [(hook["id"], hook["url"]) for hook in listed] == [(1, "https://hooks.example.com/a"),
                                                            (2, "http://127.0.0.1:9/b")]
    assert "secret" not in json.dumps(listed)
    runtime = Runtime(Settings(home=tmp_path))
    with session_scope(runtime.database) as session:
        assert session.get(Webhook, 1).secret == secret and len(secret) > 32
        upsert_labels(session=session, task=get_task(session=session, name="gold"),
                      rows=[LabelRow(line=1, user="john", text="gold soars", label="positive")])
    runtime.database.dispose()

    (delivery,) = json.loads(run("webhooks", "deliveries", "gold", "1", "--json"))
    assert (delivery["event"], delivery["state"], delivery["attempts"]) == ("labels.uploaded", "pending", 0)
    assert delivery["payload"]["data"]["users"] == ["john"]
    assert "labels.uploaded" in run("webhooks", "deliveries", "gold", "2", "--state", "pending")
    refused = run("webhooks", "redeliver", "gold", "1", str(delivery["id"]), code=1)
    assert f"delivery {delivery['id']} is still pending" in " ".join(refused.split())
    assert "removed webhook 1 of task 'gold'" in run("webhooks", "remove", "gold", "1")
    assert [hook["id"] for hook in json.loads(run("webhooks", "list", "gold", "--json"))] == [2]


@pytest.mark.parametrize("args, message", [
    (["add", "gold", "ftp://x/y"], "webhook URL 'ftp://x/y' must be an http:// or https:// URL"),
    (["add", "gold", "http://x/y", "--events", "job.started"], "unknown webhook event(s) ['job.started']"),
    (["add", "gold", "http://x/y", "--secret", "short"], "secret must be 16 to 256 characters"),
    (["remove", "gold", "7"], "webhook 7 of task 'gold' does not exist"),
    (["deliveries", "gold", "1", "--state", "lost"], "state 'lost' is not one of pending, delivered, failed"),
])
def test_bad_input_exits_non_zero_naming_the_problem(run, args: list[str], message: str) -> None:
    output = run("webhooks", *args, code=2 if "--state" in args else 1)
    assert message in " ".join(output.replace("│", " ").split())  # the text, whatever the box around it
