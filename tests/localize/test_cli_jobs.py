"""``localize jobs show`` and ``localize jobs cancel``: one job's state, arguments and events; cancelling a queued
job at once and a running one at its next step, with clear errors for a finished or unknown job."""
from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_home import CliHome
from rich.console import Console
from sqlalchemy import func
from sqlmodel import select

from localize import cli
from localize.db.models import Job, JobState
from localize.db.session import session_scope
from localize.demo_data import JOHN, demo_rows, write_jsonl
from localize.runtime import Runtime
from localize.services import job_runs
from localize.settings import Settings


class Home(CliHome):
    """A workspace that can queue John's job without running it."""

    def queue(self) -> int:
        result = self("train", "--task", "T", "--user", "john", "--method", "head", "--set", "max_epochs=5",
                      "--queue-only")
        assert result.exit_code == 0, result.output
        with session_scope(Runtime(Settings(home=self.path)).database) as session:
            return session.exec(select(func.max(Job.id))).one()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    workspace = Home(tmp_path / "home")
    labels = tmp_path / "labels.jsonl"
    write_jsonl(demo_rows(6, users=(JOHN,)), labels)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALIZE_HOME", str(workspace.path))
        patch.setattr(cli, "console", Console(width=200))
        patch.setattr(cli, "err_console", Console(width=200, stderr=True))
        assert workspace("tasks", "create", "T", "--labels", "negative,neutral,positive").exit_code == 0
        assert workspace("import", str(labels), "--task", "T").exit_code == 0
        yield workspace


def test_show_then_cancel_a_queued_job(home: Home) -> None:
    job_id = home.queue()
    shown = home("jobs", "show", str(job_id), "--json")
    assert shown.exit_code == 0, shown.output
    job = json.loads(shown.output)
    assert (job["state"], job["user"], job["args"]["max_epochs"]) == ("queued", "john", 5)
    assert job["events"][0]["message"].startswith("queued: ")

    cancelled = home("jobs", "cancel", str(job_id))
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.output.strip() == f"job {job_id} cancelled"
    job = json.loads(home("jobs", "show", str(job_id), "--json").output)
    assert job["state"] == "cancelled" and job["events"][-1]["message"] == "cancelled before it started"

    again = home("jobs", "cancel", str(job_id))
    assert again.exit_code == 1
    assert f"job {job_id} already finished (cancelled); it cannot be cancelled" in again.output
    unknown = home("jobs", "cancel", "999")
    assert unknown.exit_code == 1 and "job 999 does not exist" in unknown.output
    # Nothing pending is left: training John again is accepted.
    assert home.queue() > job_id


def test_cancel_a_running_job_asks_its_worker(home: Home) -> None:
    job_id = home.queue()
    database = Runtime(Settings(home=home.path)).database
    with session_scope(database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="busy-worker", job_id=job_id) == job_id
    result = home("jobs", "cancel", str(job_id), "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["state"] == JobState.RUNNING and job["events"][-1]["message"] == "cancellation requested"
    with session_scope(database) as session:
        assert session.get(Job, job_id).cancel_requested
    database.dispose()


def test_worker_once_runs_the_queued_job_and_gives_the_signals_back(home: Home) -> None:
    """While its job runs, Ctrl-C and SIGTERM give the job back to the queue; once it is done, a process that goes
    on (a notebook, a test runner) gets its own handlers back."""
    job_id = home.queue()
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    result = home("worker", "--once")
    assert result.exit_code == 0, result.output
    assert {signum: signal.getsignal(signum) for signum in before} == before
    job = json.loads(home("jobs", "show", str(job_id), "--json").output)
    assert job["state"] == "succeeded", job["events"]
