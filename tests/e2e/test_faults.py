"""Fault suite, processes: the worker that `localize serve` supervises is killed 20 times while it trains (each job
ends exactly once, with one adapter version per success, and no label is lost), then `serve` is sent SIGTERM
while the worker trains (every process of it is gone within 10 s and the job is back in the queue).

One server serves both tests (starting one costs seconds); the SIGTERM test runs last and ends it."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState, Label
from localize.db.session import make_engine
from localize.settings import Settings
from processes import alive, process_tree

pytestmark = pytest.mark.e2e

ADMIN_KEY = "fault-suite-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
USERS = ("ann", "bob", "cy")
UPLOADER = "dora"  # uploads while the worker dies; never trains, so the trainees' data (and time) stay small
WORK = ["invoice from Acme for printer paper", "quarterly VAT payment", "supplier contract renewal",
        "payroll run for March", "office rent transfer", "client meeting expenses"]
HOME = ["dinner with my family", "birthday present for my sister", "cinema tickets", "groceries for the weekend",
        "holiday flight to Rome", "new running shoes"]
# A few hundred epochs of a head on a dozen labels: about a second, so kills land while it trains.
TRAINING = {"method": "head", "max_epochs": 300, "patience": 300, "method_options": {"hidden": 0}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    def __init__(self, process: subprocess.Popen, url: str, home: Path, log: Path) -> None:
        self.process, self.url, self.home, self.log = process, url, home, log
        self.client = httpx.Client(base_url=url, timeout=30)
        self.keys: dict[str, dict[str, str]] = {}

    def ready(self) -> httpx.Response:
        return self.client.get("/ready")

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = self.ready()
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        pytest.fail(f"server not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def database(self) -> Session:
        return Session(make_engine(Settings(home=self.home).resolved_database_url))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("faults")
    port = _free_port()
    log = home / "serve.log"
    env = {**os.environ, "LOCALIZE_HOME": str(home), "LOCALIZE_ADMIN_KEY": ADMIN_KEY, "HF_HUB_OFFLINE": "1",
           "LOCALIZE_WORKER_POLL_SECONDS": "0.05", "LOCALIZE_WORKER_HEARTBEAT_SECONDS": "0.2",
           "LOCALIZE_WORKER_RESTART_SECONDS": "0.05", "LOCALIZE_WORKER_MAX_ATTEMPTS": "1000"}
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "localize.cli", "serve", "--port", str(port)], env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(process, f"http://127.0.0.1:{port}", home, log)
    try:
        served.wait_ready()
        client = served.client
        assert client.post("/tasks", json={"name": "notes", "labels": ["personal", "work"]},
                           headers=ADMIN).status_code == 201
        for name in (*USERS, UPLOADER):
            assert client.post("/users", json={"name": name}, headers=ADMIN).status_code == 201
            key = client.post(f"/users/{name}/keys", headers=ADMIN).json()["api_key"]
            served.keys[name] = {"Authorization": f"Bearer {key}"}
            labels = [{"text": t, "label": "work"} for t in WORK] + [{"text": t, "label": "personal"} for t in HOME]
            response = client.post(f"/tasks/notes/users/{name}/labels", json={"labels": labels},
                                   headers=served.keys[name])
            assert response.status_code == 200, response.text
        yield served
    finally:
        served.client.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        else:  # whatever it left behind in its session
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _in_training(served: Served) -> tuple[int, int] | None:
    """``(worker pid, job id)`` while the live worker trains a job (its events after this run's start say so)."""
    response = served.ready()
    if response.status_code != 200:
        return None
    worker = response.json()["worker"]
    if not worker["job_id"]:
        return None
    job = served.client.get(f"/jobs/{worker['job_id']}", headers=ADMIN).json()
    messages = [event["message"] for event in job["events"]]
    this_run = max((i for i, m in enumerate(messages) if m == f"running on worker {worker['id']}"), default=None)
    if job["state"] != "running" or this_run is None:
        return None
    if not any(m.startswith(("training on", "epoch")) for m in messages[this_run + 1:]):
        return None
    return worker["pid"], job["id"]


def _queue_for_everyone(served: Served) -> None:
    for name in USERS:
        response = served.client.post(f"/tasks/notes/users/{name}/jobs", json=TRAINING, headers=served.keys[name])
        assert response.status_code in (202, 409), response.text  # 409: that user's job is still pending


def test_the_worker_killed_20_times_while_training_loses_nothing(served: Served) -> None:
    rng = random.Random(7)
    kills: list[int] = []
    uploaded = 0
    deadline = time.monotonic() + 240
    while len(kills) < 20:
        assert time.monotonic() < deadline, f"only {len(kills)} kills in time:\n{served.log.read_text()[-3000:]}"
        if not served.client.get("/jobs", params={"state": "queued"}, headers=ADMIN).json()["count"] \
                and not served.client.get("/jobs", params={"state": "running"}, headers=ADMIN).json()["count"]:
            _queue_for_everyone(served)
        # Labels keep arriving while the worker dies.
        response = served.client.post(f"/tasks/notes/users/{UPLOADER}/labels", headers=served.keys[UPLOADER],
                                      json={"labels": [{"text": f"extra note {uploaded}", "label": "work"}]})
        assert response.status_code == 200 and response.json()["created"] == 1, response.text
        uploaded += 1
        target = _in_training(served)
        if target is None:
            time.sleep(0.05)
            continue
        pid, job_id = target
        assert pid in process_tree(served.process.pid) and pid != served.process.pid  # never anything else
        time.sleep(rng.uniform(0, 0.3))
        os.kill(pid, signal.SIGKILL)
        kills.append(job_id)
        while (worker := served.ready().json().get("worker")) is None or worker["pid"] == pid:  # until replaced
            assert time.monotonic() < deadline, served.log.read_text()[-3000:]
            time.sleep(0.05)

    # Every job finishes once the kills stop.
    deadline = time.monotonic() + 180
    while served.client.get("/jobs", params={"state": "queued"}, headers=ADMIN).json()["count"] \
            or served.client.get("/jobs", params={"state": "running"}, headers=ADMIN).json()["count"]:
        assert time.monotonic() < deadline, served.log.read_text()[-3000:]
        time.sleep(0.2)
    assert served.wait_ready()["worker"]["restarts"] == 20

    with served.database() as session:
        jobs = session.exec(select(Job)).all()
        events = session.exec(select(JobEvent).order_by(JobEvent.id)).all()
        versions = session.exec(select(AdapterVersion).where(AdapterVersion.user_id.is_not(None))).all()
        labels = session.exec(select(Label)).all()
    by_job: dict[int, list[str]] = {}
    for event in events:
        by_job.setdefault(event.job_id, []).append(event.message)
    endings = ("succeeded", "failed", "cancelled")
    for job in jobs:
        finished = [m for m in by_job[job.id] if m.startswith(endings)]
        assert len(finished) == 1, (job.id, by_job[job.id])  # ends exactly once
        assert job.state == JobState.SUCCEEDED, (job.id, job.error)
    deaths = [m for messages in by_job.values() for m in messages if "died (killed by SIGKILL)" in m]
    # Most kills land mid-job; on a busy machine more of them land on a worker between jobs.
    assert len(deaths) == sum(job.worker_deaths for job in jobs) >= 10
    assert set(Counter(kills)) <= {job.id for job in jobs}

    # One adapter version per successful job: none lost, none duplicated, each in the store whole.
    assert sorted(v.id for v in versions) == sorted(job.adapter_version_id for job in jobs if job.user_id)
    for user_id in {v.user_id for v in versions}:
        numbers = sorted(v.version for v in versions if v.user_id == user_id)
        assert numbers == list(range(1, len(numbers) + 1))
    store = served.home / "adapters"
    leftovers = [p for p in store.rglob("*") if p.name.startswith((".tmp", ".del"))] if store.exists() else []
    assert leftovers == []
    assert len(labels) == (len(USERS) + 1) * (len(WORK) + len(HOME)) + uploaded  # no label lost


def test_sigterm_stops_serve_and_its_worker_within_10_seconds(served: Served) -> None:
    assert served.process.poll() is None
    # Minutes of LoRA training: it is still training when SIGTERM comes.
    long_job = {"method": "lora", "train_scope": "all", "max_epochs": 1000, "patience": 1000}
    response = served.client.post("/tasks/notes/users/ann/jobs", json=long_job, headers=served.keys["ann"])
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (target := _in_training(served)) is None or target[1] != job_id:
        assert time.monotonic() < deadline, served.log.read_text()[-3000:]
        time.sleep(0.05)
    tree = process_tree(served.process.pid)
    assert target[0] in tree and len(tree) >= 3  # serve, the preloading server, the worker (and helpers)

    sent = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    while alive(tree) and time.monotonic() - sent < 10:
        time.sleep(0.05)
    assert alive(tree) == set(), f"still running 10 s after SIGTERM: {alive(tree)}"
    assert served.process.wait(timeout=1) == 0

    with served.database() as session:
        job = session.get(Job, job_id)
        last = session.exec(select(JobEvent.message).where(JobEvent.job_id == job_id)
                            .order_by(JobEvent.id.desc())).first()
    assert (job.state, job.worker_id, job.worker_deaths) == (JobState.QUEUED, None, 0)
    assert last.startswith("requeued: worker ") and "was stopped by SIGTERM" in last
