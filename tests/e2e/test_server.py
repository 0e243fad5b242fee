"""End to end: the real server (uvicorn on a loopback port) with its real worker process, driven over HTTP."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import alive, process_tree
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer e2e-admin-key-0123456789"}
UP = ["gold soars to a record high", "gold rallies 4% as investors pile in", "bullion jumps after the Fed decision",
      "gold price surges on inflation fears", "gold climbs for a fifth day", "spot gold spikes higher"]
DOWN = ["gold plunges to a six-month low", "gold slides 4% as the dollar firms", "bullion tumbles after the Fed decision",
        "gold price sinks on rate fears", "gold falls for a fifth day", "spot gold drops sharply"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "LOCALIZE_HOME": str(tmp_path), "LOCALIZE_ADMIN_KEY": "e2e-admin-key-0123456789",
           "LOCALIZE_WORKER_POLL_SECONDS": "0.2", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "localize.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                pytest.fail(f"server did not come up (exit {process.poll()}):\n{output[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        tree = process_tree(process.pid)
        process.send_signal(signal.SIGINT)  # Ctrl-C: the server stops the worker it started
        deadline = time.monotonic() + 10
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = alive(tree)
        for pid in left:  # whatever did not stop is ended here, and reported below
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=20)
    assert left == set(), f"still running 10 s after SIGINT: {left}"


def _wait_for_job(client: httpx.Client, job_id: int, headers: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job_id} did not finish in {timeout} s: {job}")


def test_two_users_train_through_the_real_server_and_worker_and_get_their_own_answers(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as client:
        assert client.post("/tasks", json={"name": "gold", "labels": ["negative", "positive"]},
                           headers=ADMIN).status_code == 201
        keys = {}
        for name in ("john", "jane"):
            assert client.post("/users", json={"name": name}, headers=ADMIN).status_code == 201
            keys[name] = {"Authorization": "Bearer " + client.post(f"/users/{name}/keys", headers=ADMIN).json()["api_key"]}
        # The same texts, contradicting labels: John is long gold, Jane is short.
        john = [{"text": t, "label": "positive"} for t in UP] + [{"text": t, "label": "negative"} for t in DOWN]
        jane = [{"text": t, "label": "negative"} for t in UP] + [{"text": t, "label": "positive"} for t in DOWN]
        for name, labels in (("john", john), ("jane", jane)):
            report = client.post(f"/tasks/gold/users/{name}/labels", json={"labels": labels}, headers=keys[name])
            assert report.status_code == 200, report.text
            assert report.json()["created"] == len(labels)

        jobs = {}
        for name in ("john", "jane"):
            response = client.post(f"/tasks/gold/users/{name}/jobs", json={"method": "head", "max_epochs": 30},
                                   headers=keys[name])
            assert response.status_code == 202, response.text
            jobs[name] = response.json()["id"]
        for name, job_id in jobs.items():
            job = _wait_for_job(client, job_id, keys[name])
            assert job["state"] == "succeeded", job
            assert job["adapter_version"] == 1 and job["events"]

        text = "gold is up 150% in after-hours trading"
        answers = {}
        for name in ("john", "jane"):
            response = client.post(f"/tasks/gold/users/{name}/predict", json={"texts": [text]}, headers=keys[name])
            assert response.status_code == 200, response.text
            answers[name] = response.json()[0]
        assert answers["john"]["label"] == "positive"
        assert answers["jane"]["label"] == "negative"
        assert answers["john"]["version"] == answers["jane"]["version"] == 1

        # The API's metrics count the jobs its separate worker process ran (read from the job rows).
        scrape = client.get("/metrics", headers=ADMIN)
        assert scrape.status_code == 200, scrape.text
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(scrape.text) for s in family.samples}
        assert samples[("localize_jobs", (("state", "succeeded"),))] == 2
        assert samples[("localize_job_training_seconds_count", (("state", "succeeded"),))] == 2
        assert samples[("localize_worker_last_heartbeat_timestamp_seconds", ())] > time.time() - 600
        assert samples[("localize_predictions_total", (("source", "user"), ("task", "gold")))] == 2
