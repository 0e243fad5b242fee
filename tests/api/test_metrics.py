"""``GET /metrics``: Prometheus' text format, behind the admin key (or on a port of its own), with figures that
move as requests, predictions and jobs happen."""
from __future__ import annotations

import socket
import time
from datetime import timedelta

import httpx
from api_support import ADMIN, JOHN_LABELS, TASK, TEXTS, make_settings, rows, running
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from localize.db.models import Job, JobState, Task, utcnow
from localize.db.session import make_engine

PREDICT_ROUTE = "/tasks/{task}/users/{user}/predict"


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_admin_key(client: TestClient, ws) -> None:  # noqa: ANN001
    ws.create_task()
    john = ws.create_user("john")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=john).status_code == 403
    assert client.get("/metrics", headers=ADMIN).status_code == 200


def test_figures_move_after_traffic_and_a_job(client: TestClient, ws) -> None:  # noqa: ANN001
    ws.create_task()
    john = ws.create_user("john")
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    before = scrape(client)
    ws.train("john")
    predicted = client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": TEXTS[:3]}, headers=john)
    assert predicted.status_code == 200, predicted.text
    assert client.post(f"/tasks/{TASK}/users/nobody/predict", json={"texts": ["x"]}, headers=ADMIN).status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("localize_http_requests_total", route=PREDICT_ROUTE, method="POST", status="2xx") == 1
    assert moved("localize_http_requests_total", route=PREDICT_ROUTE, method="POST", status="4xx") == 1
    assert moved("localize_http_request_duration_seconds_count", route=PREDICT_ROUTE, method="POST") == 2
    assert moved("localize_http_request_duration_seconds_sum", route=PREDICT_ROUTE, method="POST") > 0
    assert moved("localize_predictions_total", task=TASK, source="user") == 3
    assert moved("localize_engine_passes_total") >= 1
    assert moved("localize_engine_pass_rows_sum") >= 3
    assert moved("localize_engine_pass_duration_seconds_count") >= 1
    assert moved("localize_adapter_cache_misses_total") >= 1  # the new version loaded once
    assert moved("localize_adapter_load_duration_seconds_count") >= 1
    assert value(after, "localize_adapters_resident") >= 1
    # The job's figures come from its row in the database, whichever process ran it.
    assert value(after, "localize_jobs", state="succeeded") == 1
    assert value(after, "localize_jobs", state="queued") == 0
    assert value(after, "localize_job_queue_wait_seconds_count") == 1
    assert value(after, "localize_job_training_seconds_count", state="succeeded") == 1
    assert value(after, "localize_job_training_seconds_sum", state="succeeded") > 0
    assert abs(value(after, "localize_worker_last_heartbeat_timestamp_seconds") - time.time()) < 600
    # A route template, never a user's name, is what labels carry.
    text = client.get("/metrics", headers=ADMIN).text
    assert "john" not in text and "nobody" not in text


def test_job_figures_are_read_from_the_database(client: TestClient, ws, settings) -> None:  # noqa: ANN001
    """Jobs written by another process (here: another engine on the same database) show up in the scrape."""
    ws.create_task()
    other = make_engine(settings.resolved_database_url)
    now = utcnow()
    try:
        with Session(other) as session:
            task_id = session.query(Task.id).one()[0]
            session.add(Job(task_id=task_id, state=JobState.QUEUED))
            session.add(Job(task_id=task_id, state=JobState.FAILED, created_at=now - timedelta(seconds=50),
                            started_at=now - timedelta(seconds=40), finished_at=now - timedelta(seconds=10),
                            heartbeat_at=now - timedelta(seconds=10)))
            session.commit()
    finally:
        other.dispose()
    samples = scrape(client)
    assert value(samples, "localize_jobs", state="queued") == 1
    assert value(samples, "localize_jobs", state="failed") == 1
    assert value(samples, "localize_job_queue_wait_seconds_sum") == 10
    assert value(samples, "localize_job_queue_wait_seconds_bucket", le="10.0") == 1
    assert value(samples, "localize_job_queue_wait_seconds_bucket", le="5.0") == 0
    assert value(samples, "localize_job_training_seconds_sum", state="failed") == 30
    assert abs(value(samples, "localize_worker_last_heartbeat_timestamp_seconds")
               - (now - timedelta(seconds=10)).timestamp()) < 1


def test_an_operator_chosen_port_serves_metrics_without_a_key(tmp_path) -> None:  # noqa: ANN001
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running(make_settings(tmp_path, metrics_port=port)) as ws:
        ws.create_task()
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "localize_http_requests_total", route="/tasks", method="POST", status="2xx") >= 1
        assert ("localize_jobs", (("state", "queued"),)) in samples
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    with socket.socket() as probe:  # the lifespan's end stopped it
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_an_idle_workers_heartbeat_counts(client: TestClient, settings) -> None:  # noqa: ANN001
    """A worker beats in its own row while it waits for jobs; that is its last heartbeat too."""
    from localize.db.models import WorkerHeartbeat

    beat = utcnow() - timedelta(seconds=3)
    other = make_engine(settings.resolved_database_url)
    try:
        with Session(other) as session:
            session.add(WorkerHeartbeat(id="host-1-abc", host="host", pid=1, heartbeat_at=beat))
            session.commit()
    finally:
        other.dispose()
    samples = scrape(client)
    assert abs(value(samples, "localize_worker_last_heartbeat_timestamp_seconds") - beat.timestamp()) < 1
