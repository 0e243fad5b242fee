"""OpenTelemetry tracing: spans for a request, its database statements and its engine pass when configured
(here with an in-memory exporter), and nothing at all, not even an import, when not."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from api_support import JOHN_LABELS, TASK, TEXTS, make_settings, rows, running
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from localize import tracing

PREDICT_ROUTE = "/tasks/{task}/users/{user}/predict"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure(exporter=spans)
    yield spans
    tracing.shutdown()


def test_a_prediction_is_one_trace_of_request_database_and_engine_spans(tmp_path, exporter) -> None:  # noqa: ANN001
    with running(make_settings(tmp_path / "home")) as ws:
        ws.create_task()
        john = ws.create_user("john")
        ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
        ws.train("john")
        exporter.clear()
        response = ws.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": TEXTS[:2]},
                                  headers={**john, "traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"})
        assert response.status_code == 200, response.text
    spans = exporter.get_finished_spans()
    requests = [span for span in spans if span.kind == SpanKind.SERVER]
    assert [span.name for span in requests] == [f"HTTP POST {PREDICT_ROUTE}"]
    request = requests[0]
    assert request.attributes["http.route"] == PREDICT_ROUTE
    assert request.attributes["http.response.status_code"] == 200
    assert format(request.context.trace_id, "032x") == CALLER_TRACE  # it continues the caller's trace
    assert request.parent is not None and format(request.parent.span_id, "016x") == "00f067aa0ba902b7"
    in_trace = [span for span in spans if span.context.trace_id == request.context.trace_id]
    database = [span for span in in_trace if span.name.startswith("db ")]
    assert database and all(span.attributes["db.system"] == "sqlite" for span in database)
    assert any("SELECT" in span.attributes["db.statement"] for span in database)
    assert all("john" not in span.attributes["db.statement"] for span in database)  # parameters stay out
    engine = [span for span in in_trace if span.name == "engine.predict"]
    assert len(engine) == 1 and engine[0].attributes["rows"] == 2
    assert engine[0].parent.span_id == request.context.span_id
    passes = [span for span in in_trace if span.name == "engine.pass"]  # run by the micro-batcher's thread
    assert passes and passes[0].attributes["rows"] >= 2


def test_failed_requests_are_traced_with_their_status(tmp_path, exporter) -> None:  # noqa: ANN001
    with running(make_settings(tmp_path / "home")) as ws:
        assert ws.client.get("/tasks").status_code == 401
    (span,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert span.name == "HTTP GET /tasks" and span.attributes["http.response.status_code"] == 401


def test_without_an_endpoint_nothing_of_opentelemetry_is_imported(tmp_path) -> None:  # noqa: ANN001
    script = (
        "import sys\n"
        "from localize import tracing\n"
        "from localize.settings import Settings\n"
        f"assert tracing.configure(Settings(home={str(tmp_path)!r})) is False\n"
        "with tracing.span('engine.predict', rows=1) as span:\n"
        "    assert span is None\n"
        "assert tracing.request_span('GET', '/tasks', []) is None\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_otlp_endpoint_turns_tracing_on(tmp_path) -> None:  # noqa: ANN001
    """The setting (or OpenTelemetry's own variable) is all it takes; spans then go to ``<endpoint>/v1/traces``."""
    try:
        assert tracing.configure(make_settings(tmp_path, otlp_endpoint="http://127.0.0.1:9/")) is True
        exporter = tracing._provider._active_span_processor._span_processors[0].span_exporter
        assert exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
