"""OpenTelemetry tracing: a span per request, per database statement and per engine pass, exported over OTLP.

Off unless an endpoint is configured (``LOCALIZE_OTLP_ENDPOINT``, or OpenTelemetry's own
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). Off, nothing of OpenTelemetry is
imported and :func:`span` is a no-op, so tracing costs nothing when unused. The packages come with the ``otel``
extra (``pip install 'localize[otel]'``).

Spans: ``HTTP <method> <route>`` (server kind, continuing a caller's ``traceparent``), ``db <statement kind>``
for each SQL statement (its text without parameters), ``engine.predict`` around a request's engine pass (waiting
for a micro-batch included; its ``rows`` attribute counts the request's rows).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None


def endpoint_from(settings) -> str | None:  # noqa: ANN001
    return (getattr(settings, "otlp_endpoint", None) or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def configure(settings=None, *, exporter=None, service_name: str = "localize") -> bool:  # noqa: ANN001
    """Turns tracing on when ``settings`` name an OTLP endpoint, or with ``exporter`` (a SpanExporter: tests pass
    an in-memory one, whose spans are then exported synchronously). Returns whether tracing is on."""
    global _tracer, _provider
    endpoint = endpoint_from(settings) if settings is not None else None
    if exporter is None and not endpoint:
        return enabled()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as error:
        raise RuntimeError(f"tracing to {endpoint!r} needs the OpenTelemetry SDK: pip install 'localize[otel]' "
                           f"({error})") from None
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise RuntimeError(f"tracing to {endpoint!r} needs the OTLP exporter: pip install 'localize[otel]' "
                               f"({error})") from None
        # OpenTelemetry's variable names the collector's base URL; the traces path is appended as its spec says.
        traces = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces))
        logger.info("tracing: spans go to %s", traces)
    else:
        processor = SimpleSpanProcessor(exporter)
    if _provider is not None:
        _provider.shutdown()
    # A provider of our own, not the global one: the app never changes what other libraries in the process trace.
    _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("localize")
    return True


def shutdown() -> None:
    """Flushes and stops tracing (back to the no-op)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = None, None


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current one while tracing is on; otherwise nothing at all."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def request_span(method: str, route: str, headers: list[tuple[bytes, bytes]]):  # noqa: ANN201
    """The server span of one HTTP request, continuing the caller's trace (W3C ``traceparent``); None when off.
    The caller ends it with :func:`end_request_span`."""
    if _tracer is None:
        return None
    from opentelemetry import context, propagate, trace

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
    parent = propagate.extract(carrier)
    current = _tracer.start_span(f"HTTP {method} {route}", context=parent, kind=trace.SpanKind.SERVER,
                                 attributes={"http.request.method": method, "http.route": route})
    token = context.attach(trace.set_span_in_context(current, parent))
    return current, token


def end_request_span(handle, route: str, status: int) -> None:  # noqa: ANN001
    if handle is None:
        return
    from opentelemetry import context, trace

    current, token = handle
    current.update_name(f"HTTP {current.attributes.get('http.request.method', '')} {route}".strip())
    current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(trace.Status(trace.StatusCode.ERROR))
    current.end()
    context.detach(token)


def instrument_database(database) -> None:  # noqa: ANN001  (a SQLAlchemy engine)
    """A span per SQL statement of ``database`` while tracing is on (listeners are added once per engine)."""
    if _tracer is None or getattr(database, "_localize_traced", False):
        return
    from sqlalchemy import event

    system = database.dialect.name

    @event.listens_for(database, "before_cursor_execute")
    def _start(connection, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        if _tracer is None:
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        current = _tracer.start_span(f"db {verb}", attributes={"db.system": system, "db.statement": statement})
        connection.info.setdefault("localize_spans", []).append(current)

    @event.listens_for(database, "after_cursor_execute")
    def _end(connection, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        spans = connection.info.get("localize_spans")
        if spans:
            spans.pop().end()

    @event.listens_for(database, "handle_error")
    def _failed(exception_context) -> None:  # noqa: ANN001
        spans = exception_context.connection.info.get("localize_spans") if exception_context.connection else None
        if spans:
            from opentelemetry import trace

            current = spans.pop()
            current.set_status(trace.Status(trace.StatusCode.ERROR, str(exception_context.original_exception)))
            current.end()

    database._localize_traced = True
