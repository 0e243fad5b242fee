"""The OpenAPI document and a real ``localize serve`` agree, as schemathesis sees it: every operation with its
explicit examples and a fixed number of generated requests each (undeclared methods and their ``Allow`` header are
checked in-process, for every path, by tests/api/test_input_rules.py: schemathesis' coverage phase would take
minutes here).

Checks: no 5xx; every status code, content type, header and body as the document states (405 with the right
``Allow``); and no request valid by the document refused (only 401/403/404/409/429 and, for label uploads whose
labels must be in the task's label set, a 422 naming the rows). Bounded: a few examples per operation, a fixed
seed, one run of at most a few minutes on a loaded machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from localize.bench.server import child_env, free_port, localize_command, running_server

pytestmark = pytest.mark.e2e

ADMIN_KEY = "schemathesis-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
EXAMPLES_PER_OPERATION = 5
CONFIG = """
[checks.negative_data_rejection]
enabled = false

# A label must be one of the task's labels, which no document can list: an upload of only unknown labels is a
# 422 that names each row (its valid rows would have been stored).
[[operations]]
include-path-regex = "/labels$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


@pytest.fixture
def server(tmp_path: Path):
    """``localize serve`` with the resources the document's examples name: task gold-sentiment, users john and
    jane with labels."""
    port = free_port()
    home = tmp_path / "home"
    env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY, LOCALIZE_WORKER_POLL_SECONDS="0.5", OMP_NUM_THREADS="1")
    with running_server(localize_command("serve", "--port", str(port)), env, port,
                        log_path=tmp_path / "server.log") as url:
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            created = client.post("/tasks", json={"name": "gold-sentiment",
                                                  "labels": ["negative", "neutral", "positive"]})
            assert created.status_code == 201, created.text
            for name, label in (("john", "positive"), ("jane", "negative")):
                assert client.post("/users", json={"name": name}).status_code == 201
                rows = [{"text": f"gold moves {i}", "label": label} for i in range(6)]
                assert client.post(f"/tasks/gold-sentiment/users/{name}/labels", json={"labels": rows}).status_code == 200
        yield url  # stopped afterwards with the worker it started


def test_the_server_does_what_its_openapi_document_says(server: str, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    command = [st, "--config-file", str(config), "run", f"{server}/openapi.json", "--header",
               f"Authorization: Bearer {ADMIN_KEY}", "--phases", "examples,fuzzing", "--workers", "2",
               "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1", "--generation-deterministic",
               "--no-shrink", "--no-color", "--continue-on-failure", "--request-timeout", "60",
               "--warnings", "off"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"schemathesis found problems ({elapsed:.0f} s):\n{result.stdout[-12000:]}"
