"""The fsspec adapter store against a real S3-protocol server (moto's server mode on a loopback port), shared by two
processes as a deployment shares it: a worker process trains and writes versions, this process serves them. A
damaged object falls back to the previous good version exactly as with the local store."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from localize.db.models import AdapterVersion, Job, JobState
from localize.db.session import session_scope
from localize.errors import AdapterError
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, predict
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.training_args import TrainingArguments

pytestmark = pytest.mark.e2e

# A linear head for five epochs: well under a second per version.
FAST = TrainingArguments(method="head", max_epochs=5, method_options={"hidden": 0})
TEXT = "Invoice 731 from Hooli for office printer toner"
# The worker: the same code `localize worker` runs, configured only through the environment.
WORKER = "from localize.worker import Worker; from localize.runtime import Runtime; Worker(Runtime()).run_forever()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, stopped after the module."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {process.stderr.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def s3_runtime(make_runtime, s3_endpoint: str, monkeypatch) -> Runtime:
    """A runtime whose adapter store is ``s3://<new bucket>/adapters`` on the moto server (the store creates the
    bucket, as it would on a fresh MinIO)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    options = {"key": "test-key", "secret": "test-secret", "client_kwargs": {"endpoint_url": s3_endpoint}}
    return make_runtime(adapter_store=f"s3://localize-{uuid.uuid4().hex[:12]}/adapters", adapter_store_options=options)


@pytest.fixture
def worker_process(s3_runtime: Runtime) -> Iterator[subprocess.Popen]:
    """A training worker in its own process, on the same database and S3 store as ``s3_runtime``."""
    settings = s3_runtime.settings
    env = {**os.environ, "LOCALIZE_HOME": str(settings.home), "LOCALIZE_DATABASE_URL": settings.resolved_database_url,
           "LOCALIZE_ADAPTER_STORE": settings.adapter_store,
           "LOCALIZE_ADAPTER_STORE_OPTIONS": json.dumps(settings.adapter_store_options),
           "LOCALIZE_WORKER_POLL_SECONDS": "0.1", "LOCALIZE_ADMIN_KEY": "k", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _train_in_worker(runtime: Runtime, worker: subprocess.Popen, seed: int) -> AdapterVersion:
    """Queues a job here, waits for the worker process to finish it, and returns the version it wrote."""
    with session_scope(runtime.database) as session:
        job = job_service.queue_training(session=session, task=get_task(session=session, name="notes"),
                                         user=get_user(session=session, name="john"),
                                         args=TrainingArguments.from_dict({**FAST.to_dict(), "seed": seed}))
        job_id = job.id
    deadline = time.monotonic() + 120
    while True:
        with session_scope(runtime.database) as session:
            job = session.get(Job, job_id)
            if job.state in JobState.FINISHED:
                assert job.state == JobState.SUCCEEDED, job.error
                return session.get(AdapterVersion, job.adapter_version_id)
        if worker.poll() is not None:
            pytest.fail(f"the worker process exited: {worker.stderr.read().decode(errors='replace')[-3000:]}")
        assert time.monotonic() < deadline, f"job {job_id} did not finish in 120 s"
        time.sleep(0.2)


def _predict(runtime: Runtime):  # noqa: ANN202
    with session_scope(runtime.database) as session:
        return predict(session=session, runtime=runtime,
                       requests=[PredictionRequest(user="john", task="notes", text=TEXT)])[0]


def test_a_worker_process_writes_versions_to_s3_that_this_process_serves_and_a_damaged_object_falls_back(
    s3_runtime: Runtime, worker_process: subprocess.Popen, tiny_texts
) -> None:
    runtime = s3_runtime
    texts, john, _, labels = tiny_texts
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=labels)
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, user="john", text=text, label=label)
                                                        for i, (text, label) in enumerate(zip(texts, john))])

    v1 = _train_in_worker(runtime, worker_process, seed=0)
    assert runtime.store.exists(v1.store_key, 1)
    first = _predict(runtime)
    assert (first.version, first.label) == (1, "work")

    # The second version appears in the bucket after this process has already listed and read the first.
    v2 = _train_in_worker(runtime, worker_process, seed=1)
    assert v2.version == 2 and v2.is_active
    assert _predict(runtime).version == 2
    stored = runtime.store.read_files(v2.store_key, 2, expected_hashes=v2.files)  # every object, hash-checked
    assert sorted(stored) == sorted(v2.files)

    # Flip one bit of version 2's head object behind the store's back, as a faulty copy or an operator would.
    key = f"{runtime.store._prefix(v2.store_key, 2)}/head.safetensors"
    data = runtime.store.fs.cat_file(key)
    runtime.store.fs.pipe_file(key, data[:-1] + bytes([data[-1] ^ 1]))
    runtime.engine.evict(adapter_service.engine_key(v2))  # as after a restart: version 2 is read from S3 again

    answer = _predict(runtime)
    assert (answer.version, answer.label) == (1, "work")  # the previous good version answers
    with session_scope(runtime.database) as session:
        rows = {row.version: row for row in adapter_service.list_versions(
            session=session, task=get_task(session=session, name="notes"), user=get_user(session=session, name="john"))}
    assert rows[2].is_active and rows[1].load_error is None
    assert "version 2 is corrupt: head.safetensors does not match its recorded sha256" in rows[2].load_error

    # A missing object (the version's whole prefix gone) is reported as missing, never as a crash.
    runtime.store.fs.rm(runtime.store._prefix(v2.store_key, 1), recursive=True)
    runtime.engine.evict(adapter_service.engine_key(v1))
    with pytest.raises(AdapterError, match=r"no earlier version can stand in: .*version 1 is not in the store \(localize.json is missing"):
        _predict(runtime)
